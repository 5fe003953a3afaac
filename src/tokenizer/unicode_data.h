#pragma once
// Unicode tables for canonical normalization (NFC/NFD). The data lives in unicode_data.cpp,
// generated from Python's unicodedata by the script kept at the end of that file.

#include <cstddef>
#include <cstdint>

namespace ranktune::tokenizer::unicode_data {

// Code points first..last (inclusive) share the non-zero canonical combining class `ccc`.
struct CombiningClassRange {
  char32_t first;
  char32_t last;
  uint8_t ccc;
};

// One level of a canonical decomposition: code_point -> first (+ second, 0 for a singleton).
// `composes` is true when NFC recomposes first + second into code_point (a primary composite
// that is not excluded from composition).
struct CanonicalDecomposition {
  char32_t code_point;
  char32_t first;
  char32_t second;
  bool composes;
};

// Both sorted by code point. Hangul syllables are algorithmic and not listed.
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClassCount;
extern const CanonicalDecomposition kDecompositions[];
extern const size_t kDecompositionCount;

}  // namespace ranktune::tokenizer::unicode_data
