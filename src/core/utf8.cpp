#include "ranktune/core/utf8.h"

namespace ranktune {
namespace {

// Length of the valid UTF-8 sequence at `pos`, or 0 when it is invalid; in that case
// `*bad_length` is the length of the maximal invalid subpart to replace (Unicode §3.9).
size_t valid_sequence_at(std::string_view text, size_t pos, size_t* bad_length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    *bad_length = 1;
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    const bool in_range = pos + i < text.size() &&
                          (i == 1 ? (byte(pos + i) >= low && byte(pos + i) <= high)
                                  : (byte(pos + i) & 0xC0) == 0x80);
    if (!in_range) {
      *bad_length = i;
      return 0;
    }
  }
  return length;
}

}  // namespace

size_t find_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t bad = 0;
    const size_t length = valid_sequence_at(text, pos, &bad);
    if (length == 0) return pos;
    pos += length;
  }
  return std::string::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t bad = 0;
    const size_t length = valid_sequence_at(bytes, pos, &bad);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      pos += bad;
    } else {
      out.append(bytes.substr(pos, length));
      pos += length;
    }
  }
  return out;
}

}  // namespace ranktune
