#pragma once
// UTF-8 validity and lossy repair, for text that may be cut mid-character (model completions,
// byte-fallback tokens).

#include <cstddef>
#include <string>
#include <string_view>

namespace ranktune {

// Offset of the first byte that is not part of well-formed UTF-8 (overlongs, surrogates and code
// points above U+10FFFF are invalid), or std::string::npos.
size_t find_invalid_utf8(std::string_view text);

// `bytes` with every maximal invalid subsequence (Unicode §3.9) replaced by one U+FFFD, as Rust's
// String::from_utf8_lossy and Python's bytes.decode("utf-8", "replace") do.
std::string utf8_lossy(std::string_view bytes);

}  // namespace ranktune
