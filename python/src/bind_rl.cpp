// Reinforcement-learning arithmetic (ranktune::train::grpo_loss.h) as ranktune._core.rl: GRPO's
// group-relative advantages and its loss, tensors in and a differentiable loss out, for users who
// write their own RL loop in Python (ranktune.rl wraps these with TRL's argument names).

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/train/grpo_loss.h"

namespace ranktune::python {
namespace {

train::RewardScaling reward_scaling(const std::string& name) {
  if (name == "group") return train::RewardScaling::group;
  if (name == "batch") return train::RewardScaling::batch;
  if (name == "none") return train::RewardScaling::none;
  throw Error("scale_rewards: '" + name + "' is not one of group, batch, none");
}

train::GrpoLossType loss_type(const std::string& name) {
  if (name == "grpo") return train::GrpoLossType::grpo;
  if (name == "bnpo") return train::GrpoLossType::bnpo;
  if (name == "dr_grpo") return train::GrpoLossType::dr_grpo;
  if (name == "dapo") return train::GrpoLossType::dapo;
  throw Error("loss_type: '" + name + "' is not one of grpo, bnpo, dr_grpo, dapo");
}

}  // namespace

void bind_rl(py::module_& m) {
  auto rl = m.def_submodule("rl", "GRPO's advantages and loss (ranktune/train/grpo_loss.h)");
  rl.def(
      "group_advantages",
      [](const at::Tensor& rewards, int64_t num_generations, const std::string& scale_rewards) {
        const auto out = train::group_advantages(rewards, num_generations, reward_scaling(scale_rewards));
        return py::make_tuple(out.advantages, out.std_is_zero, out.frac_zero_std_groups);
      },
      py::arg("rewards"), py::arg("num_generations"), py::arg("scale_rewards") = "group");
  rl.def(
      "combine_rewards",
      [](const at::Tensor& rewards_per_func, const std::vector<double>& weights) {
        return train::combine_rewards(rewards_per_func, weights);
      },
      py::arg("rewards_per_func"), py::arg("weights"));
  rl.def(
      "grpo_loss",
      [](const at::Tensor& logps, const std::optional<at::Tensor>& old_logps, const std::optional<at::Tensor>& ref_logps,
         const at::Tensor& advantages, const at::Tensor& completion_mask, const std::string& type, double epsilon,
         std::optional<double> epsilon_high, double beta, std::optional<int64_t> max_completion_length,
         std::optional<double> num_items_in_batch) {
        train::GrpoLossOptions options;
        options.loss_type = loss_type(type);
        options.epsilon = epsilon;
        options.epsilon_high = epsilon_high.value_or(epsilon);
        options.beta = beta;
        options.max_completion_length = max_completion_length.value_or(0);
        options.num_items_in_batch = num_items_in_batch;
        // ref_logps is ignored when beta is 0 (TRL computes no reference pass then).
        const auto out = train::grpo_loss(logps, or_undefined(old_logps), beta != 0 ? or_undefined(ref_logps) : at::Tensor(),
                                          advantages, completion_mask, options);
        py::dict metrics;
        metrics["clip_ratio/low_mean"] = out.clip_ratio_low;
        metrics["clip_ratio/high_mean"] = out.clip_ratio_high;
        metrics["clip_ratio/region_mean"] = out.clip_ratio_region;
        if (beta != 0) metrics["kl"] = out.mean_kl;
        return py::make_tuple(out.loss, metrics);
      },
      py::arg("logps"), py::arg("old_logps"), py::arg("ref_logps"), py::arg("advantages"), py::arg("completion_mask"),
      py::kw_only(), py::arg("loss_type") = "dapo", py::arg("epsilon") = 0.2, py::arg("epsilon_high") = py::none(),
      py::arg("beta") = 0.0, py::arg("max_completion_length") = py::none(), py::arg("num_items_in_batch") = py::none());
}

}  // namespace ranktune::python
