#pragma once
// tokenizer.json decoders: turn token strings back into text. Supported types: Sequence,
// ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace.

#include "ranktune/io/json.h"

#include <memory>
#include <string>
#include <vector>

namespace ranktune::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings; the decoded text is their concatenation.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Builds the decoder described by `spec` (nullptr for JSON null). Unknown types are errors
// naming the file, the JSON path and the supported types.
std::unique_ptr<Decoder> make_decoder(const io::json& spec, const io::JsonPath& at);

}  // namespace ranktune::tokenizer
