// eval/gsm8k_eval: the statistics of an evaluation.

#include "ranktune/core/error.h"
#include "ranktune/eval/gsm8k_eval.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

using namespace ranktune;

namespace {

TEST(EvalStatsTest, PassAtKIsTheUnbiasedEstimator) {
  EXPECT_DOUBLE_EQ(eval::pass_at_k(10, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(eval::pass_at_k(10, 10, 5), 1.0);
  EXPECT_NEAR(eval::pass_at_k(10, 3, 1), 0.3, 1e-12);
  // 1 - C(7,2)/C(10,2) = 1 - 21/45
  EXPECT_NEAR(eval::pass_at_k(10, 3, 2), 1.0 - 21.0 / 45.0, 1e-12);
  EXPECT_THROW(eval::pass_at_k(4, 1, 5), Error);
}

TEST(EvalStatsTest, MajorityVoteNormalisesNumbers) {
  using A = std::optional<std::string>;
  EXPECT_EQ(eval::majority_vote({A("1,000"), A("7"), A("1000"), std::nullopt, A("$1000.00")}), A("1,000"));
  EXPECT_EQ(eval::majority_vote({A("3"), A("4")}), A("3"));  // a tie goes to the first
  EXPECT_EQ(eval::majority_vote({std::nullopt}), std::nullopt);
}

}  // namespace
