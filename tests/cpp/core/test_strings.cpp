// core/strings: small string helpers.

#include "ranktune/core/strings.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

TEST(PromptNearestTest, SuggestsTheClosestKeyOrNothing) {
  const std::vector<std::string> keys = {"name", "prompt", "response", "few_shot", "answer_pattern", "stop"};
  EXPECT_EQ(ranktune::nearest("promt", keys), "prompt");
  EXPECT_EQ(ranktune::nearest("fewshot", keys), "few_shot");
  EXPECT_EQ(ranktune::nearest("answer_patern", keys), "answer_pattern");
  EXPECT_EQ(ranktune::nearest("stpo", keys), "stop");  // an adjacent swap costs 1
  EXPECT_EQ(ranktune::nearest("Prompt", keys), "prompt");
  EXPECT_EQ(ranktune::nearest("temperature", keys), "");
  EXPECT_EQ(ranktune::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(ranktune::edit_distance("", "abc"), 3u);
}

TEST(StringsTest, TrimRemovesAsciiWhitespaceAtBothEndsOnly) {
  EXPECT_EQ(ranktune::trim("  72 \n"), "72");
  EXPECT_EQ(ranktune::trim("\t\r\f\va b\v"), "a b");
  EXPECT_EQ(ranktune::trim("a  b"), "a  b");
  EXPECT_EQ(ranktune::trim(" \n\t "), "");
  EXPECT_EQ(ranktune::trim(""), "");
  EXPECT_EQ(ranktune::trim("\xC2\xA0x\xC2\xA0"), "\xC2\xA0x\xC2\xA0");  // U+00A0 is not ASCII whitespace
}

TEST(StringsTest, StartsWithEndsWithAndJoin) {
  EXPECT_TRUE(ranktune::starts_with("tokenizer.model", "tokenizer"));
  EXPECT_TRUE(ranktune::starts_with("abc", ""));
  EXPECT_FALSE(ranktune::starts_with("ab", "abc"));
  EXPECT_TRUE(ranktune::ends_with("tokenizer.model", ".model"));
  EXPECT_FALSE(ranktune::ends_with("tokenizer.json", ".model"));
  EXPECT_FALSE(ranktune::ends_with("el", "model"));
  EXPECT_EQ(ranktune::join({"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(ranktune::join({"a", "b"}, " | "), "a | b");
  EXPECT_EQ(ranktune::join({}), "");
}
