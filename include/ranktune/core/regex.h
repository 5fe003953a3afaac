#pragma once
// A compiled regular expression (PCRE2 with UTF and Unicode properties), close to Python's `re`
// so that patterns written for Hugging Face PEFT and tokenizers behave the same here.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ranktune {

// One match of Regex::find_all: the whole match [begin, end) and one capture group's text (nullopt
// when that group did not take part).
struct RegexMatch {
  size_t begin = 0;
  size_t end = 0;
  std::optional<std::string> group;
};

class Regex {
 public:
  // Throws ranktune::Error naming the pattern, the offset and PCRE2's reason when it does not
  // compile.
  explicit Regex(std::string pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // Python's re.fullmatch: the whole subject must match.
  bool full_match(std::string_view subject) const;
  // Python's re.match: a match that starts at the beginning. On success and when `group` > 0,
  // writes that capture group (empty if it did not participate) to `*captured`.
  bool match_prefix(std::string_view subject, int group = 0, std::string* captured = nullptr) const;
  // Python's re.search: a match anywhere.
  bool search(std::string_view subject) const;
  // Python's re.finditer: the [begin, end) byte offsets of the successive non-overlapping
  // matches. Lookarounds see the whole subject. After an empty match the next one may not be
  // empty at the same place (Perl's rule). The subject must be valid UTF-8 (checked once).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view subject) const;
  // The same matches with the text of capture group `group` (≥ 1) of each.
  std::vector<RegexMatch> find_all(std::string_view subject, int group) const;
  // Number of capture groups in the pattern.
  int capture_count() const;

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ranktune
