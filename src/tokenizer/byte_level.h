#pragma once
// GPT-2's reversible byte <-> character table: every byte maps to a printable character
// (printable Latin-1 bytes to themselves, the others to U+0100 upwards), so that byte-level
// BPE vocabularies are plain strings. Used by the ByteLevel pre-tokenizer and decoder.

#include <cstdint>
#include <string>
#include <string_view>

namespace ranktune::tokenizer {

// The UTF-8 of the character byte `b` maps to.
const std::string& byte_level_char(uint8_t b);

// Appends the byte-level form of `bytes` to `out`.
void append_byte_level(std::string& out, std::string_view bytes);

// The byte that character `code_point` stands for, or -1 when it is not in the table.
int byte_level_byte(char32_t code_point);

}  // namespace ranktune::tokenizer
