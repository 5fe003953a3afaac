#pragma once
// Code points in UTF-8 for the tokenizer: decoding, encoding and the Unicode White_Space property.
// Strings are UTF-8 byte strings throughout the tokenizer; validity and lossy repair are in
// ranktune/core/utf8.h.

#include <cstddef>
#include <string>
#include <string_view>

namespace ranktune::tokenizer {

// Byte length of the UTF-8 sequence that starts with `lead` (1 for a stray byte).
inline size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// The code point that starts at `pos` in valid UTF-8; advances `pos` past it.
char32_t next_code_point(std::string_view text, size_t& pos);

// The code point that ends at `end` (exclusive) in valid UTF-8, and its start in `*begin`.
char32_t previous_code_point(std::string_view text, size_t end, size_t* begin);

void append_utf8(std::string& out, char32_t code_point);

// The Unicode White_Space property (what Rust's char::is_whitespace tests).
bool is_unicode_whitespace(char32_t code_point);

}  // namespace ranktune::tokenizer
