// core/regex: PCRE2 patterns that behave like Python's re.

#include "ranktune/core/regex.h"

#include "ranktune/core/error.h"

#include <gmock/gmock.h>

#include <optional>
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

TEST(RegexTest, FullMatchPrefixAndSearchAreFullmatchMatchAndSearch) {
  const ranktune::Regex answer(R"(The answer is (\d+)\.?)");
  EXPECT_TRUE(answer.full_match("The answer is 42."));
  EXPECT_FALSE(answer.full_match("The answer is 42. Done"));
  std::string captured;
  EXPECT_TRUE(answer.match_prefix("The answer is 42. Done", 1, &captured));
  EXPECT_EQ(captured, "42");
  EXPECT_FALSE(answer.match_prefix("So: The answer is 42"));
  EXPECT_TRUE(answer.search("So: The answer is 42"));
  EXPECT_FALSE(answer.search("no number here"));
  EXPECT_EQ(answer.capture_count(), 1);
  EXPECT_TRUE(ranktune::Regex(R"(\p{Lu}\w+)").full_match("\u00c9cole"));  // Unicode properties and \w
}

TEST(RegexTest, FindAllReportsEachMatchsGroupOrNoneWhenItDidNotTakePart) {
  const auto matches = ranktune::Regex(R"((\d+)|x)").find_all("12 x 3", 1);
  ASSERT_EQ(matches.size(), 3u);
  EXPECT_EQ(matches[0].group, std::optional<std::string>("12"));
  EXPECT_EQ(matches[1].group, std::nullopt);
  EXPECT_EQ((std::pair<size_t, size_t>(matches[1].begin, matches[1].end)), (std::pair<size_t, size_t>(3, 4)));
  EXPECT_EQ(matches[2].group, std::optional<std::string>("3"));
}

TEST(RegexTest, PatternThatDoesNotCompileIsNamedWithTheOffset) {
  try {
    ranktune::Regex("(unclosed");
    FAIL() << "expected a ranktune::Error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("invalid regular expression '(unclosed' at offset 9"));
  }
}
