#include "ranktune/train/grpo_loss.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

#include <limits>
#include <string>

namespace ranktune::train {
namespace {

using torch::Tensor;

// Mean and unbiased standard deviation ignoring NaN along `dim` (TRL's nanmean / nanstd): the
// std is NaN where fewer than two values count.
std::pair<Tensor, Tensor> nan_mean_std(const Tensor& x, std::optional<int64_t> dim) {
  const Tensor valid = x.isnan().logical_not();
  const Tensor zeroed = x.nan_to_num(0.0, 0.0, 0.0);
  const auto sum = [&](const Tensor& t) { return dim ? t.sum(*dim, /*keepdim=*/true) : t.sum(); };
  const Tensor count = sum(valid.to(x.scalar_type()));
  const Tensor mean = sum(zeroed) / count;  // NaN when nothing counts (0/0)
  const Tensor centred = (x - mean).nan_to_num(0.0, 0.0, 0.0);
  const Tensor variance = sum(centred * centred) / (count - 1);
  const Tensor std = at::where(count > 1, variance.sqrt(), at::full_like(variance, std::numeric_limits<double>::quiet_NaN()));
  return {mean, std};
}

void check(bool ok, const std::string& message) {
  if (!ok) throw Error("grpo_loss: " + message);
}

std::string shape(const Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

double masked_mean(const Tensor& values, const Tensor& mask) {
  const double count = mask.sum().item<double>();
  return count > 0 ? (values * mask).sum().item<double>() / count : 0.0;
}

}  // namespace

Tensor combine_rewards(const Tensor& rewards_per_func, const std::vector<double>& weights) {
  if (rewards_per_func.dim() != 2 || rewards_per_func.size(1) != static_cast<int64_t>(weights.size()))
    throw Error("combine_rewards: rewards per function must be [completions, " + std::to_string(weights.size()) +
                "] (one column per reward weight), got " + shape(rewards_per_func));
  const Tensor r = rewards_per_func.to(at::kDouble);
  const Tensor w = at::tensor(weights, r.options());
  Tensor total = (r.nan_to_num(0.0, 0.0, 0.0) * w).sum(1);
  const Tensor unscorable = r.isnan().all(1);
  return total.masked_fill(unscorable, std::numeric_limits<double>::quiet_NaN());
}

GroupAdvantages group_advantages(const Tensor& rewards, int64_t num_generations, RewardScaling scaling) {
  if (num_generations < 1) throw Error("group_advantages: num_generations must be ≥ 1, got " + std::to_string(num_generations));
  if (rewards.dim() != 1 || rewards.size(0) % num_generations != 0)
    throw Error("group_advantages: rewards must be one value per completion, a multiple of num_generations = " +
                std::to_string(num_generations) + " (prompts × generations), got " + shape(rewards));
  const Tensor grouped = rewards.view({-1, num_generations});
  auto [group_mean, group_std] = nan_mean_std(grouped, 1);
  Tensor std = group_std.expand_as(grouped).reshape({-1});
  if (scaling == RewardScaling::batch) {
    std = nan_mean_std(rewards, std::nullopt).second.expand_as(rewards);
  }
  // A single completion per prompt has no group statistics (TRL: std 0 for logging).
  if (num_generations == 1 && scaling != RewardScaling::batch) std = at::zeros_like(rewards);
  Tensor advantages = rewards - group_mean.expand_as(grouped).reshape({-1});
  if (scaling != RewardScaling::none) advantages = advantages / (std + 1e-4);
  GroupAdvantages out;
  out.advantages = advantages.nan_to_num(0.0, 0.0, 0.0);
  out.std_is_zero = at::isclose(std, at::zeros_like(std));
  const Tensor group_zero = num_generations == 1 ? at::ones({grouped.size(0)}, rewards.options().dtype(at::kBool))
                                                 : at::isclose(group_std.squeeze(1), at::zeros_like(group_std.squeeze(1)));
  out.frac_zero_std_groups = grouped.size(0) ? group_zero.to(at::kDouble).mean().item<double>() : 0.0;
  return out;
}

GrpoLossResult grpo_loss(const Tensor& logps, const Tensor& old_logps, const Tensor& ref_logps, const Tensor& advantages,
                         const Tensor& completion_mask, const GrpoLossOptions& options) {
  check(logps.dim() == 2, "logps must be [completions, tokens], got " + shape(logps));
  check(completion_mask.sizes() == logps.sizes(),
        "completion_mask " + shape(completion_mask) + " must have the shape of logps " + shape(logps));
  check(!old_logps.defined() || old_logps.sizes() == logps.sizes(),
        "old_logps " + shape(old_logps) + " must have the shape of logps " + shape(logps));
  check(advantages.dim() == 1 && advantages.size(0) == logps.size(0),
        "advantages must be one value per completion [" + std::to_string(logps.size(0)) + "], got " + shape(advantages));
  check(options.epsilon >= 0 && options.epsilon_high >= 0, "epsilon and epsilon_high must be ≥ 0");
  check(options.beta >= 0, "beta must be ≥ 0, got " + std::to_string(options.beta));
  if (options.beta != 0)
    check(ref_logps.defined() && ref_logps.sizes() == logps.sizes(),
          "beta > 0 needs ref_logps of the shape of logps " + shape(logps) + ", got " +
              (ref_logps.defined() ? shape(ref_logps) : std::string("none")));
  if (options.loss_type == GrpoLossType::dr_grpo)
    check(options.max_completion_length > 0, "loss_type dr_grpo needs max_completion_length > 0");

  const Tensor mask = completion_mask.to(logps.scalar_type());
  const Tensor old = old_logps.defined() ? old_logps.to(logps.scalar_type()) : logps.detach();
  const Tensor adv = advantages.to(logps.scalar_type()).unsqueeze(1);
  // The clipped surrogate: -min(ρA, clip(ρ, 1-ε, 1+ε_high)A) per token, ρ = π/π_old.
  const Tensor ratio = (logps - old).exp();
  const Tensor clipped = ratio.clamp(1 - options.epsilon, 1 + options.epsilon_high);
  Tensor per_token = -at::min(ratio * adv, clipped * adv);
  Tensor kl;
  if (options.beta != 0) {
    // k3 estimator of KL(π‖π_ref): exp(ref - logp) - (ref - logp) - 1 ≥ 0, unbiased, low variance.
    const Tensor delta = ref_logps.to(logps.scalar_type()) - logps;
    kl = delta.exp() - delta - 1;
    per_token = per_token + options.beta * kl;
  }

  GrpoLossResult out;
  const Tensor masked = per_token * mask;
  switch (options.loss_type) {
    case GrpoLossType::grpo:
      out.loss = (masked.sum(-1) / mask.sum(-1).clamp_min(1.0)).mean();
      break;
    case GrpoLossType::bnpo:
      out.loss = masked.sum() / mask.sum().clamp_min(1.0);
      break;
    case GrpoLossType::dr_grpo:
      out.loss = masked.sum() / static_cast<double>(logps.size(0) * options.max_completion_length);
      break;
    case GrpoLossType::dapo: {
      const double items = options.num_items_in_batch ? *options.num_items_in_batch : mask.sum().item<double>();
      out.loss = masked.sum() / std::max(items, 1.0);
      break;
    }
  }

  const at::NoGradGuard no_grad;
  const Tensor low = ratio.lt(1 - options.epsilon).logical_and(adv.lt(0)).to(mask.scalar_type());
  const Tensor high = ratio.gt(1 + options.epsilon_high).logical_and(adv.gt(0)).to(mask.scalar_type());
  out.clip_ratio_low = masked_mean(low, mask);
  out.clip_ratio_high = masked_mean(high, mask);
  out.clip_ratio_region = masked_mean(low.logical_or(high).to(mask.scalar_type()), mask);
  if (kl.defined()) out.mean_kl = masked_mean(kl, mask);
  return out;
}

}  // namespace ranktune::train
