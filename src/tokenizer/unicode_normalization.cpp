#include "unicode_normalization.h"

#include "unicode_data.h"
#include "utf8.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ranktune::tokenizer {

namespace {

// Hangul syllables decompose and compose algorithmically (Unicode §3.12).
constexpr char32_t kHangulBase = 0xAC00, kLeadBase = 0x1100, kVowelBase = 0x1161, kTrailBase = 0x11A7;
constexpr char32_t kLeadCount = 19, kVowelCount = 21, kTrailCount = 28;
constexpr char32_t kSyllableCount = kLeadCount * kVowelCount * kTrailCount;

struct Tables {
  std::unordered_map<char32_t, std::pair<char32_t, char32_t>> decomposition;
  std::unordered_map<uint64_t, char32_t> composition;  // (first << 32 | second) -> composite

  Tables() {
    decomposition.reserve(unicode_data::kDecompositionCount);
    for (size_t i = 0; i < unicode_data::kDecompositionCount; ++i) {
      const auto& d = unicode_data::kDecompositions[i];
      decomposition.emplace(d.code_point, std::make_pair(d.first, d.second));
      if (d.composes) composition.emplace((static_cast<uint64_t>(d.first) << 32) | d.second, d.code_point);
    }
  }
};

const Tables& tables() {
  static const Tables instance;
  return instance;
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* begin = unicode_data::kCombiningClasses;
  const auto* end = begin + unicode_data::kCombiningClassCount;
  const auto* it = std::upper_bound(begin, end, cp, [](char32_t c, const auto& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kHangulBase && cp < kHangulBase + kSyllableCount) {
    const char32_t index = cp - kHangulBase;
    out.push_back(kLeadBase + index / (kVowelCount * kTrailCount));
    out.push_back(kVowelBase + (index % (kVowelCount * kTrailCount)) / kTrailCount);
    if (index % kTrailCount != 0) out.push_back(kTrailBase + index % kTrailCount);
    return;
  }
  const auto& map = tables().decomposition;
  const auto it = map.find(cp);
  if (it == map.end()) {
    out.push_back(cp);
    return;
  }
  decompose(it->second.first, out);
  if (it->second.second != 0) decompose(it->second.second, out);
}

// The primary composite of (first, second), or 0.
char32_t compose(char32_t first, char32_t second) {
  if (first >= kLeadBase && first < kLeadBase + kLeadCount && second >= kVowelBase &&
      second < kVowelBase + kVowelCount) {
    return kHangulBase + ((first - kLeadBase) * kVowelCount + (second - kVowelBase)) * kTrailCount;
  }
  if (first >= kHangulBase && first < kHangulBase + kSyllableCount && (first - kHangulBase) % kTrailCount == 0 &&
      second > kTrailBase && second < kTrailBase + kTrailCount) {
    return first + (second - kTrailBase);
  }
  const auto& map = tables().composition;
  const auto it = map.find((static_cast<uint64_t>(first) << 32) | second);
  return it == map.end() ? 0 : it->second;
}

// Full canonical decomposition followed by the canonical ordering of combining marks.
std::vector<char32_t> canonical_decomposition(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) decompose(next_code_point(text, pos), out);
  // Stable sort of every run of non-starters by combining class.
  size_t i = 0;
  while (i < out.size()) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && combining_class(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + i, out.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  return out;
}

// Every code point below U+0300 (UTF-8 lead bytes below 0xCC) is unchanged by NFC (not by NFD:
// it decomposes Latin-1 letters).
bool below_combining_marks(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0xCC; });
}

}  // namespace

std::string to_nfd(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return std::string(text);
  }
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : canonical_decomposition(text)) append_utf8(out, cp);
  return out;
}

std::string to_nfc(std::string_view text) {
  if (below_combining_marks(text)) return std::string(text);
  const std::vector<char32_t> decomposed = canonical_decomposition(text);
  std::vector<char32_t> composed;
  composed.reserve(decomposed.size());
  size_t starter = SIZE_MAX;  // index in `composed` of the last starter
  uint8_t last_class = 0;     // combining class of the last character appended
  for (char32_t cp : decomposed) {
    const uint8_t cc = combining_class(cp);
    if (starter != SIZE_MAX) {
      // Not blocked: adjacent to the starter, or every character between has a lower class.
      const bool adjacent = composed.size() - 1 == starter;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        const char32_t composite = compose(composed[starter], cp);
        if (composite != 0) {
          composed[starter] = composite;
          continue;
        }
      }
    }
    if (cc == 0) starter = composed.size();
    last_class = cc;
    composed.push_back(cp);
  }
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : composed) append_utf8(out, cp);
  return out;
}

}  // namespace ranktune::tokenizer
