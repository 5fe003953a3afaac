// core/regex: PCRE2 patterns that behave like Python's re.

#include "ranktune/core/regex.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

TEST(TokenizerRegex, FindAllMatchesLikePythonFinditer) {
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(ranktune::Regex(R"(\d+)").find_all("a1b22"), (Ranges{{1, 2}, {3, 5}}));
  EXPECT_EQ(ranktune::Regex("x*").find_all("ab"), (Ranges{{0, 0}, {1, 1}, {2, 2}}));
  EXPECT_EQ(ranktune::Regex(R"(\s+(?!\S)|\s+)").find_all("a  b"), (Ranges{{1, 2}, {2, 3}}));  // lookahead sees "b"
  EXPECT_EQ(ranktune::Regex(R"(\p{L}+)").find_all("h\u00e9llo w\u00f6rld"), (Ranges{{0, 6}, {7, 13}}));
  EXPECT_TRUE(ranktune::Regex("a").find_all("").empty());
}
