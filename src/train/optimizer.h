#pragma once
// AdamW over the trainable parameters in four groups, so each gets the right learning rate and
// weight decay:
//   matrices             lr,          weight_decay
//   1-D tensors          lr,          no decay      (biases, norms, DoRA magnitudes)
//   LoRA B (LoRA+)       lr · ratio,  weight_decay
//   1-D adapter (LoRA+)  lr · ratio,  no decay
// LoRA+ (Hayou et al. 2024) gives B a larger learning rate than A; with ratio 0 it is off and B is
// a plain matrix. Internal to the train layer (it includes the heavy optimizer headers).

#include "ranktune/train/config.h"

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

namespace ranktune::train {

class TrainingOptimizer {
 public:
  TrainingOptimizer(torch::nn::Module& model, const TrainSection& settings);

  // Sets every group's learning rate to base · multiplier · the group's factor.
  void set_lr_multiplier(double multiplier);
  double lr() const { return base_lr_ * multiplier_; }
  void step() { adamw_->step(); }
  void zero_grad() { adamw_->zero_grad(); }
  const std::vector<torch::Tensor>& parameters() const { return parameters_; }
  // The AdamW behind it: its parameter groups and state, for inspection.
  const torch::optim::AdamW& adamw() const { return *adamw_; }
  int64_t parameter_count() const;

  // Optimizer state (moments, step counts), for exact resumption. Atomic.
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  std::unique_ptr<torch::optim::AdamW> adamw_;
  std::vector<double> group_factors_;
  std::vector<torch::Tensor> parameters_;
  double base_lr_;
  double multiplier_ = 1.0;
};

}  // namespace ranktune::train
