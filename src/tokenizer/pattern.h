#pragma once
// The patterns of tokenizer.json's Split pre-tokenizer and Replace normalizer/decoder: a literal
// string ({"String": ...}) or a regular expression ({"Regex": ...}, PCRE2 with Unicode).

#include "ranktune/core/regex.h"
#include "ranktune/io/json.h"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ranktune::tokenizer {

using ByteRange = std::pair<size_t, size_t>;  // [begin, end) byte offsets

class Pattern {
 public:
  static Pattern literal(std::string text);
  static Pattern regex(const std::string& pattern);  // throws ranktune::Error if it does not compile

  // Successive non-overlapping matches, left to right.
  std::vector<ByteRange> find_all(std::string_view text) const;
  std::string replace_all(std::string_view text, std::string_view replacement) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

// Field `key` of `spec` as a {"String": "..."} or {"Regex": "..."} pattern (Split, Replace); a
// regex that does not compile is an error naming the field.
Pattern read_pattern(io::SortedJsonFields& spec, const std::string& key);

// How Split keeps the matches of its pattern (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Splits `text` at `matches` (sorted, non-overlapping) as tokenizers' NormalizedString::split
// does; `invert` swaps matches and the text between them. Empty pieces are dropped.
std::vector<ByteRange> split_ranges(std::string_view text, const std::vector<ByteRange>& matches,
                                    SplitBehavior behavior, bool invert = false);

}  // namespace ranktune::tokenizer
