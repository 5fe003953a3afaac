#pragma once
// Unicode case mapping of UTF-8 text, the one the chat templates' lower/upper filters use (the C
// library's simple mappings in a UTF-8 locale), for the layers above (BM25's tokens, retriever.h).

#include <string>
#include <string_view>

namespace ranktune::tokenizer {

// Every code point of valid UTF-8 `text` lower-cased (simple mapping: "ΣΟΦΙΑ" → "σοφια").
std::string lowercase(std::string_view text);

}  // namespace ranktune::tokenizer
