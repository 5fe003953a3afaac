#include "byte_level.h"

#include "utf8.h"

#include <array>

namespace ranktune::tokenizer {

namespace {

struct ByteLevelTable {
  std::array<std::string, 256> byte_to_char;
  std::array<int, 324> char_to_byte;  // every mapped character is below U+0144

  ByteLevelTable() {
    char_to_byte.fill(-1);
    char32_t next_free = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next_free++;
      append_utf8(byte_to_char[b], cp);
      char_to_byte[cp] = b;
    }
  }
};

const ByteLevelTable& table() {
  static const ByteLevelTable instance;
  return instance;
}

}  // namespace

const std::string& byte_level_char(uint8_t b) { return table().byte_to_char[b]; }

void append_byte_level(std::string& out, std::string_view bytes) {
  const auto& t = table();
  for (char c : bytes) out += t.byte_to_char[static_cast<uint8_t>(c)];
}

int byte_level_byte(char32_t code_point) {
  return code_point < table().char_to_byte.size() ? table().char_to_byte[code_point] : -1;
}

}  // namespace ranktune::tokenizer
