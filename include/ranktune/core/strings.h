#pragma once
// Small string helpers used across layers.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ranktune {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `s` without the ASCII whitespace (space, \t, \n, \r, \f, \v: C's isspace) at either end.
std::string trim(std::string_view s);

// "a, b, c"
std::string join(const std::vector<std::string>& parts, std::string_view separator = ", ");

// Edit distance (optimal string alignment: insertions, deletions, substitutions and swaps of two
// adjacent characters each cost 1), compared without regard to ASCII case.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` by edit_distance, for "did you mean ...?" hints; "" when none is
// close enough (distance at most max(2, word.size() / 3)). Ties go to the earlier candidate.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace ranktune
