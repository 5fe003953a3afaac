#pragma once
// tokenizer.json normalizers: rewrite the text before pre-tokenization. Supported types:
// Sequence, NFC, NFD, Prepend, Replace, Strip.

#include "ranktune/io/json.h"

#include <memory>
#include <string>

namespace ranktune::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// Builds the normalizer described by `spec` (nullptr for JSON null). Unknown types are errors
// that name the file, the JSON path and the supported types.
std::unique_ptr<Normalizer> make_normalizer(const io::json& spec, const io::JsonPath& at);

}  // namespace ranktune::tokenizer
