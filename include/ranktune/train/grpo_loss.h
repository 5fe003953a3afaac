#pragma once
// The arithmetic of GRPO (Shao et al. 2024, DeepSeekMath) as TRL's GRPOTrainer computes it:
// rewards of G completions per prompt → group-relative advantages → the clipped surrogate loss
// with an optional k3 KL to the reference policy, normalised by loss_type. Tensors in, a
// differentiable loss out; the GRPO trainer (train/grpo.h) and Python's ranktune.rl call it.
//
//   auto adv = group_advantages(rewards, /*num_generations=*/8, RewardScaling::group);
//   auto out = grpo_loss(logps, {}, {}, adv.advantages, mask, GrpoLossOptions());
//   out.loss.backward();

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace ranktune::train {

// grpo.scale_rewards: what the centred rewards are divided by (TRL's names).
enum class RewardScaling {
  group,  // each group's standard deviation (GRPO)
  batch,  // the whole batch's standard deviation (REINFORCE++-like, more robust)
  none,   // nothing (Dr. GRPO: the std division biases towards easy and hard questions)
};

// grpo.loss_type: how the per-token losses of a batch are averaged (TRL's names).
enum class GrpoLossType {
  grpo,     // mean over each completion's tokens, then over completions (length-biased)
  bnpo,     // mean over all completion tokens of the batch
  dr_grpo,  // sum over tokens / (completions × max_completion_length): no length bias
  dapo,     // sum over tokens / tokens in the whole global batch (TRL's default)
};

// Weighted sum of each completion's rewards: rewards_per_func [N, F] (NaN where a function does
// not apply), weights F values. NaN entries count as 0; a row where every function is NaN stays
// NaN (unscorable: excluded from the group statistics, advantage 0). Returns [N], float64.
torch::Tensor combine_rewards(const torch::Tensor& rewards_per_func, const std::vector<double>& weights);

struct GroupAdvantages {
  torch::Tensor advantages;   // [N]: (r - group mean) / (std + 1e-4) as scaling says; NaN → 0
  torch::Tensor std_is_zero;  // [N] bool: the std used (group, or batch) is 0 — no learning signal
  // The share of groups whose rewards do not vary (TRL's frac_reward_zero_std, counted per group
  // whatever the scaling, so "every completion scored the same" is visible in the metrics).
  double frac_zero_std_groups = 0;
};

// rewards [N] with N = prompts × num_generations, rows of one prompt adjacent (row i·G + j is the
// j-th completion of prompt i). Means and (unbiased) standard deviations ignore NaN rewards.
// Throws ranktune::Error when N is not a multiple of num_generations or num_generations < 1.
GroupAdvantages group_advantages(const torch::Tensor& rewards, int64_t num_generations, RewardScaling scaling);

struct GrpoLossOptions {
  GrpoLossType loss_type = GrpoLossType::dapo;
  double epsilon = 0.2;       // lower clip: ratio ≥ 1 - epsilon
  double epsilon_high = 0.2;  // upper clip: ratio ≤ 1 + epsilon_high (DAPO's clip-higher: 0.28)
  double beta = 0.0;          // weight of the k3 KL to the reference; 0: ref_logps is not used
  // dr_grpo's denominator; required (> 0) for that loss type.
  int64_t max_completion_length = 0;
  // dapo's denominator: completion tokens in the whole global batch (all accumulation steps and
  // workers). Unset: the tokens of this batch.
  std::optional<double> num_items_in_batch;
};

struct GrpoLossResult {
  torch::Tensor loss;  // scalar, differentiable with respect to logps
  // Diagnostics over completion tokens (TRL's metrics): shares of tokens clipped below (ratio <
  // 1-ε with A < 0), above (ratio > 1+ε_high with A > 0) and either; the mean per-token k3 KL
  // (0 when beta is 0).
  double clip_ratio_low = 0;
  double clip_ratio_high = 0;
  double clip_ratio_region = 0;
  double mean_kl = 0;
};

// logps, old_logps, ref_logps, completion_mask: [B, T] (per-token log-probabilities of the sampled
// completion tokens; mask 1 on tokens that count). advantages: [B]. An undefined old_logps means
// on-policy (μ = 1): the detached logps, so the ratio is 1 and its gradient is the policy gradient.
// ref_logps is required when beta ≠ 0 and ignored otherwise. Throws ranktune::Error on shape
// mismatches or invalid options.
GrpoLossResult grpo_loss(const torch::Tensor& logps, const torch::Tensor& old_logps, const torch::Tensor& ref_logps,
                         const torch::Tensor& advantages, const torch::Tensor& completion_mask,
                         const GrpoLossOptions& options);

}  // namespace ranktune::train
