#pragma once
// tokenizer.json pre-tokenizers: cut normalized text into the words the model encodes one by
// one. Supported types: Sequence, ByteLevel, Split, Metaspace, Digits.

#include "ranktune/io/json.h"

#include <memory>
#include <string>
#include <vector>

namespace ranktune::tokenizer {

// A piece of text on its way to the model. `at_start`: it begins the input text (Metaspace's
// prepend_scheme "first" adds its prefix only there).
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their sub-pieces, in order; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// Builds the pre-tokenizer described by `spec` (nullptr for JSON null). Unknown types are
// errors naming the file, the JSON path and the supported types.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const io::json& spec, const io::JsonPath& at);

}  // namespace ranktune::tokenizer
