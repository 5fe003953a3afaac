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
