// core/dtype: the one dtype parser and the names it reads back.

#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <string>
#include <utility>
#include <vector>

using ranktune::Error;
using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

TEST(DtypeTest, ParsesEverySpellingInUse) {
  // Recipes (model.dtype), config.json (torch_dtype) and Python's dtype= (str(torch.bfloat16)).
  const std::vector<std::pair<std::string, c10::ScalarType>> spellings = {
      {"float32", c10::kFloat},   {"fp32", c10::kFloat},     {"float", c10::kFloat},  {"torch.float32", c10::kFloat},
      {"float64", c10::kDouble},  {"fp64", c10::kDouble},    {"double", c10::kDouble},
      {"bfloat16", c10::kBFloat16}, {"bf16", c10::kBFloat16}, {"torch.bfloat16", c10::kBFloat16},
      {"float16", c10::kHalf},    {"fp16", c10::kHalf},      {"half", c10::kHalf},    {"torch.float16", c10::kHalf},
  };
  for (const auto& [name, dtype] : spellings) EXPECT_EQ(ranktune::parse_dtype(name), dtype) << name;
}

TEST(DtypeTest, NameIsTheCanonicalSpellingAndReadsBack) {
  for (c10::ScalarType dtype : {c10::kFloat, c10::kDouble, c10::kBFloat16, c10::kHalf}) {
    EXPECT_EQ(ranktune::parse_dtype(ranktune::dtype_name(dtype)), dtype);
  }
  EXPECT_EQ(ranktune::dtype_name(c10::kFloat), "float32");
  EXPECT_EQ(ranktune::dtype_name(c10::kBFloat16), "bfloat16");
  EXPECT_EQ(ranktune::dtype_name(c10::kHalf), "float16");
  EXPECT_EQ(ranktune::dtype_name(c10::kLong), "Long");  // not a parseable dtype: c10's name
}

TEST(DtypeTest, UnknownNameIsAnErrorNamingTheValueAndTheSpellings) {
  // No silent fallback to float32 (the CLI's merge and the trainer used to have one).
  for (const char* bad : {"float8", "auto", "", "Float32", "int64", "torch."}) {
    const Error e = thrown_error([&] { ranktune::parse_dtype(bad); });
    EXPECT_THAT(e.what(), HasSubstr("unknown dtype '" + std::string(bad) + "'"));
    EXPECT_THAT(e.what(), HasSubstr("float32 (fp32, float)"));
    EXPECT_THAT(e.what(), HasSubstr("bfloat16 (bf16)"));
    EXPECT_THAT(e.what(), HasSubstr("float16 (fp16, half)"));
  }
  // The caller says where the value came from.
  const Error e = thrown_error([] {
    try {
      ranktune::parse_dtype("float8");
    } catch (const Error& inner) {
      throw inner.with_context(ranktune::ErrorContext{"model/config.json", "torch_dtype", -1});
    }
  });
  EXPECT_THAT(e.what(), HasSubstr("model/config.json: 'torch_dtype': unknown dtype 'float8'"));
}
