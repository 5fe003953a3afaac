// train/grpo_loss: GRPO's advantages and loss against an independent float64 implementation in
// plain loops, written from TRL's GRPOTrainer formulas (grpo_trainer.py, _generate_and_score_
// completions and _compute_loss); gradients against central finite differences of that
// implementation; μ = 1, β = 0 against the group-baseline policy gradient written by hand.

#include "ranktune/core/error.h"
#include "ranktune/train/grpo_loss.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

using namespace ranktune;
using namespace ranktune::train;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using Matrix = std::vector<std::vector<double>>;

// ---- the reference, in loops ----------------------------------------------------------------

// TRL's nanmean and nanstd (Bessel-corrected; NaN with fewer than two values).
std::pair<double, double> ref_mean_std(const std::vector<double>& xs) {
  double sum = 0;
  int n = 0;
  for (double x : xs)
    if (!std::isnan(x)) sum += x, ++n;
  const double mean = n ? sum / n : kNaN;
  double sq = 0;
  for (double x : xs)
    if (!std::isnan(x)) sq += (x - mean) * (x - mean);
  return {mean, n > 1 ? std::sqrt(sq / (n - 1)) : kNaN};
}

std::vector<double> ref_advantages(const std::vector<double>& rewards, int g, const std::string& scale) {
  const size_t n = rewards.size();
  std::vector<double> out(n);
  const double batch_std = ref_mean_std(rewards).second;
  for (size_t start = 0; start < n; start += g) {
    const std::vector<double> group(rewards.begin() + start, rewards.begin() + start + g);
    auto [mean, std] = ref_mean_std(group);
    if (scale == "batch") std = batch_std;
    for (int j = 0; j < g; ++j) {
      double a = rewards[start + j] - mean;
      if (scale != "none") a /= std + 1e-4;
      out[start + j] = std::isnan(a) ? 0.0 : a;
    }
  }
  return out;
}

struct RefInputs {
  Matrix logp, old, ref, mask;
  std::vector<double> adv;
  bool has_old = false;
  std::string loss_type = "dapo";
  double eps = 0.2, eps_high = 0.2, beta = 0.0;
  int max_len = 0;
};

double ref_loss(const RefInputs& in) {
  const size_t b = in.logp.size(), t = in.logp[0].size();
  double total = 0, tokens = 0, per_seq_mean_sum = 0;
  for (size_t i = 0; i < b; ++i) {
    double seq = 0, seq_tokens = 0;
    for (size_t k = 0; k < t; ++k) {
      const double old = in.has_old ? in.old[i][k] : in.logp[i][k];
      const double ratio = std::exp(in.logp[i][k] - old);
      const double clipped = std::clamp(ratio, 1 - in.eps, 1 + in.eps_high);
      double loss = -std::min(ratio * in.adv[i], clipped * in.adv[i]);
      if (in.beta != 0) {
        const double d = in.ref[i][k] - in.logp[i][k];
        loss += in.beta * (std::exp(d) - d - 1);
      }
      seq += loss * in.mask[i][k];
      seq_tokens += in.mask[i][k];
    }
    total += seq;
    tokens += seq_tokens;
    per_seq_mean_sum += seq / std::max(seq_tokens, 1.0);
  }
  if (in.loss_type == "grpo") return per_seq_mean_sum / b;
  if (in.loss_type == "dr_grpo") return total / (b * in.max_len);
  return total / std::max(tokens, 1.0);  // bnpo, and dapo within one batch
}

// ---- helpers ------------------------------------------------------------------------------

at::Tensor to_tensor(const Matrix& m) {
  std::vector<double> flat;
  for (const auto& row : m) flat.insert(flat.end(), row.begin(), row.end());
  return at::tensor(flat, at::kDouble).view({static_cast<int64_t>(m.size()), static_cast<int64_t>(m[0].size())});
}

GrpoLossType loss_type(const std::string& name) {
  if (name == "grpo") return GrpoLossType::grpo;
  if (name == "bnpo") return GrpoLossType::bnpo;
  if (name == "dr_grpo") return GrpoLossType::dr_grpo;
  return GrpoLossType::dapo;
}

GrpoLossResult run(const RefInputs& in, at::Tensor* grad = nullptr) {
  at::Tensor logp = to_tensor(in.logp).requires_grad_(true);
  GrpoLossOptions options;
  options.loss_type = loss_type(in.loss_type);
  options.epsilon = in.eps;
  options.epsilon_high = in.eps_high;
  options.beta = in.beta;
  options.max_completion_length = in.max_len;
  auto out = grpo_loss(logp, in.has_old ? to_tensor(in.old) : at::Tensor(), in.beta != 0 ? to_tensor(in.ref) : at::Tensor(),
                       at::tensor(in.adv, at::kDouble), to_tensor(in.mask), options);
  if (grad) {
    out.loss.backward();
    *grad = logp.grad();
  }
  return out;
}

// Three completions × four tokens with ragged masks; old and ref log-probs far enough from logp
// that both clip bounds are crossed.
RefInputs sample_inputs() {
  RefInputs in;
  in.logp = {{-0.5, -1.2, -0.3, -2.0}, {-0.9, -0.1, -1.7, -0.4}, {-1.1, -0.6, -0.2, -0.8}};
  in.old = {{-0.9, -1.0, -0.3, -2.5}, {-0.6, -0.5, -1.2, -0.4}, {-1.0, -0.2, -0.9, -0.8}};
  in.ref = {{-0.7, -1.5, -0.1, -1.8}, {-1.0, -0.3, -1.5, -0.6}, {-1.3, -0.6, -0.4, -0.5}};
  in.mask = {{1, 1, 1, 0}, {1, 1, 1, 1}, {1, 0, 0, 0}};
  in.adv = {1.3, -0.7, -0.6};
  in.max_len = 4;
  return in;
}

}  // namespace

TEST(GrpoAdvantages, MatchTheReferenceForEveryScaling) {
  // Two groups of four; the second has an unscorable (NaN) completion.
  const std::vector<double> rewards = {1, 0, 0.5, 1, 2, kNaN, 0, 1};
  for (auto [scale, scaling] : {std::pair{"group", RewardScaling::group}, std::pair{"batch", RewardScaling::batch},
                                std::pair{"none", RewardScaling::none}}) {
    const auto got = group_advantages(at::tensor(rewards, at::kDouble), 4, scaling);
    const auto want = ref_advantages(rewards, 4, scale);
    for (size_t i = 0; i < rewards.size(); ++i)
      EXPECT_NEAR(got.advantages[i].item<double>(), want[i], 1e-12) << scale << " row " << i;
    EXPECT_EQ(got.frac_zero_std_groups, 0.0) << scale;
  }
}

TEST(GrpoAdvantages, ZeroSpreadGroupsGiveZeroAdvantageAndAreCounted) {
  // Group 0 all correct, group 1 mixed, group 2 all wrong, group 3 has one scorable completion.
  const std::vector<double> rewards = {1, 1, 1, 0, 1, 0, 0, 0, 0, kNaN, kNaN, 1};
  const auto out = group_advantages(at::tensor(rewards, at::kDouble), 3, RewardScaling::group);
  EXPECT_FALSE(out.advantages.isnan().any().item<bool>());
  EXPECT_FALSE(out.advantages.isinf().any().item<bool>());
  EXPECT_DOUBLE_EQ(out.frac_zero_std_groups, 0.5);  // groups 0 and 2 (group 3's std is undefined, as TRL)
  for (int i : {0, 1, 2, 6, 7, 8, 9, 10, 11}) EXPECT_EQ(out.advantages[i].item<double>(), 0.0) << i;
  EXPECT_TRUE(out.std_is_zero[0].item<bool>());
  EXPECT_FALSE(out.std_is_zero[3].item<bool>());
  // A loss on all-zero advantages is exactly 0 with a zero gradient (no NaN).
  RefInputs in = sample_inputs();
  in.adv = {0, 0, 0};
  at::Tensor grad;
  const auto loss = run(in, &grad);
  EXPECT_EQ(loss.loss.item<double>(), 0.0);
  EXPECT_EQ(grad.abs().max().item<double>(), 0.0);
}

TEST(GrpoAdvantages, CombineRewardsWeightsAndKeepsUnscorableRowsNaN) {
  const auto per_func = at::tensor(std::vector<double>{1, 0, kNaN, 1, kNaN, kNaN}, at::kDouble).view({3, 2});
  const auto total = combine_rewards(per_func, {1.0, 0.5});
  EXPECT_DOUBLE_EQ(total[0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(total[1].item<double>(), 0.5);
  EXPECT_TRUE(std::isnan(total[2].item<double>()));
  EXPECT_THROW(combine_rewards(per_func, {1.0}), Error);
}

TEST(GrpoAdvantages, BadShapesNameTheProblem) {
  try {
    group_advantages(at::zeros({7}, at::kDouble), 4, RewardScaling::group);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("multiple of num_generations = 4"));
  }
  EXPECT_THROW(group_advantages(at::zeros({8}, at::kDouble), 0, RewardScaling::group), Error);
}

TEST(GrpoLoss, ValueAndGradientMatchTheReferenceForEveryLossType) {
  for (const std::string type : {"grpo", "bnpo", "dr_grpo", "dapo"})
    for (bool has_old : {false, true})
      for (double beta : {0.0, 0.04}) {
        RefInputs in = sample_inputs();
        in.loss_type = type;
        in.has_old = has_old;
        in.beta = beta;
        in.eps_high = 0.28;
        at::Tensor grad;
        const auto got = run(in, &grad);
        const std::string what = type + (has_old ? " old" : " on-policy") + " beta=" + std::to_string(beta);
        EXPECT_NEAR(got.loss.item<double>(), ref_loss(in), 1e-12) << what;
        // Central differences of the reference. The clipped surrogate is piecewise smooth; no
        // input sits on a clip boundary, so a step of 1e-6 stays on one piece.
        for (size_t i = 0; i < in.logp.size(); ++i)
          for (size_t k = 0; k < in.logp[0].size(); ++k) {
            RefInputs plus = in, minus = in;
            plus.logp[i][k] += 1e-6;
            minus.logp[i][k] -= 1e-6;
            // On-policy means old = detach(logp): the ratio's gradient exists but its value stays 1.
            if (!has_old) plus.old = minus.old = in.logp, plus.has_old = minus.has_old = true;
            const double fd = (ref_loss(plus) - ref_loss(minus)) / 2e-6;
            EXPECT_NEAR(grad[i][k].item<double>(), fd, 1e-7) << what << " at " << i << "," << k;
          }
      }
}

TEST(GrpoLoss, OnPolicyWithoutKlIsTheGroupBaselinePolicyGradient) {
  // μ = 1, β = 0: ratio ≡ 1, so loss = -Σ A_i·mask / norm and ∂loss/∂logp_it = -A_i·mask_it / norm.
  RefInputs in = sample_inputs();
  for (const std::string type : {"grpo", "bnpo", "dr_grpo", "dapo"}) {
    in.loss_type = type;
    at::Tensor grad;
    const auto got = run(in, &grad);
    double want_loss = 0, tokens = 0;
    for (size_t i = 0; i < 3; ++i)
      for (size_t k = 0; k < 4; ++k) tokens += in.mask[i][k];
    for (size_t i = 0; i < 3; ++i) {
      double seq_tokens = 0;
      for (size_t k = 0; k < 4; ++k) seq_tokens += in.mask[i][k];
      for (size_t k = 0; k < 4; ++k) {
        const double norm = type == "grpo" ? 3 * seq_tokens : type == "dr_grpo" ? 3.0 * 4 : tokens;
        EXPECT_NEAR(grad[i][k].item<double>(), -in.adv[i] * in.mask[i][k] / norm, 1e-15) << type;
        want_loss += -in.adv[i] * in.mask[i][k] / norm;
      }
    }
    EXPECT_NEAR(got.loss.item<double>(), want_loss, 1e-15) << type;
    EXPECT_EQ(got.clip_ratio_region, 0.0);
  }
}

TEST(GrpoLoss, ClipRatiosAndKlAreTheMaskedMeans) {
  RefInputs in = sample_inputs();
  in.has_old = true;
  in.beta = 0.1;
  const auto got = run(in);
  double low = 0, high = 0, kl = 0, n = 0;
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < 4; ++k) {
      if (!in.mask[i][k]) continue;
      const double ratio = std::exp(in.logp[i][k] - in.old[i][k]);
      low += ratio < 0.8 && in.adv[i] < 0;
      high += ratio > 1.2 && in.adv[i] > 0;
      const double d = in.ref[i][k] - in.logp[i][k];
      kl += std::exp(d) - d - 1;
      ++n;
    }
  EXPECT_GT(low, 0);  // the inputs cross both bounds, so the test means something
  EXPECT_GT(high, 0);
  EXPECT_NEAR(got.clip_ratio_low, low / n, 1e-12);
  EXPECT_NEAR(got.clip_ratio_high, high / n, 1e-12);
  EXPECT_NEAR(got.clip_ratio_region, (low + high) / n, 1e-12);
  EXPECT_NEAR(got.mean_kl, kl / n, 1e-12);
}

TEST(GrpoLoss, DapoUsesTheGlobalTokenCountWhenGiven) {
  RefInputs in = sample_inputs();
  GrpoLossOptions options;
  options.num_items_in_batch = 20.0;
  const auto logp = to_tensor(in.logp);
  const auto mask = to_tensor(in.mask);
  const auto adv = at::tensor(in.adv, at::kDouble);
  const auto local = grpo_loss(logp, {}, {}, adv, mask, GrpoLossOptions()).loss.item<double>();
  const auto global = grpo_loss(logp, {}, {}, adv, mask, options).loss.item<double>();
  EXPECT_NEAR(global, local * mask.sum().item<double>() / 20.0, 1e-15);
}

TEST(GrpoLoss, BadInputsNameTheProblem) {
  const auto logp = at::zeros({2, 3}, at::kDouble);
  const auto mask = at::ones({2, 3}, at::kDouble);
  const auto adv = at::zeros({2}, at::kDouble);
  GrpoLossOptions kl;
  kl.beta = 0.1;
  EXPECT_THAT([&] { grpo_loss(logp, {}, {}, adv, mask, kl); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("beta > 0 needs ref_logps")));
  GrpoLossOptions dr;
  dr.loss_type = GrpoLossType::dr_grpo;
  EXPECT_THAT([&] { grpo_loss(logp, {}, {}, adv, mask, dr); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("max_completion_length")));
  EXPECT_THAT([&] { grpo_loss(logp, {}, {}, at::zeros({3}, at::kDouble), mask, GrpoLossOptions()); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("advantages must be one value per completion [2]")));
  EXPECT_THAT([&] { grpo_loss(logp, {}, {}, adv, at::ones({2, 4}), GrpoLossOptions()); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("completion_mask [2, 4]")));
}
