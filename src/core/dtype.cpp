#include "ranktune/core/dtype.h"

#include "ranktune/core/error.h"

#include <iterator>

namespace ranktune {
namespace {

struct DtypeSpelling {
  c10::ScalarType dtype;
  const char* name;     // what dtype_name returns
  const char* aliases;  // also accepted, comma-separated as shown in the error
};

const DtypeSpelling kDtypes[] = {
    {c10::kFloat, "float32", "fp32, float"},
    {c10::kDouble, "float64", "fp64, double"},
    {c10::kBFloat16, "bfloat16", "bf16"},
    {c10::kHalf, "float16", "fp16, half"},
};

bool is_alias(std::string_view name, std::string_view aliases) {
  while (!aliases.empty()) {
    const size_t comma = aliases.find(", ");
    if (aliases.substr(0, comma) == name) return true;
    aliases = comma == std::string_view::npos ? std::string_view() : aliases.substr(comma + 2);
  }
  return false;
}

}  // namespace

c10::ScalarType parse_dtype(std::string_view name) {
  std::string_view bare = name;
  if (bare.substr(0, 6) == "torch.") bare.remove_prefix(6);
  for (const auto& d : kDtypes) {
    if (bare == d.name || is_alias(bare, d.aliases)) return d.dtype;
  }
  std::string accepted;
  for (size_t i = 0; i < std::size(kDtypes); ++i) {
    if (i > 0) accepted += i + 1 == std::size(kDtypes) ? " or " : ", ";
    accepted += std::string(kDtypes[i].name) + " (" + kDtypes[i].aliases + ")";
  }
  throw Error("unknown dtype '" + std::string(name) + "'; use " + accepted);
}

std::string dtype_name(c10::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  return c10::toString(dtype);
}

}  // namespace ranktune
