#include "optimizer.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"

#include <torch/serialize/archive.h>

#include <cstdio>
#include <sstream>

namespace ranktune::train {

TrainingOptimizer::TrainingOptimizer(torch::nn::Module& model, const TrainSection& s) : base_lr_(s.lr) {
  const bool lora_plus = s.lora_plus_ratio > 0;
  std::vector<torch::Tensor> groups[4];  // matrices, vectors, B matrices, adapter vectors
  for (const auto& item : model.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    const std::string& name = item.key();
    const bool vector = p.dim() < 2;
    const bool adapter_b = name.find("lora_B.") != std::string::npos;
    const bool adapter_vector = vector && name.find("lora_") != std::string::npos;
    int group = vector ? 1 : 0;
    if (lora_plus && adapter_b) group = 2;
    if (lora_plus && adapter_vector) group = 3;
    groups[group].push_back(p);
    parameters_.push_back(p);
  }
  RANKTUNE_CHECK(!parameters_.empty(), "nothing to train: no parameter requires a gradient");
  const double factors[4] = {1.0, 1.0, lora_plus ? s.lora_plus_ratio : 1.0, lora_plus ? s.lora_plus_ratio : 1.0};
  const double decays[4] = {s.weight_decay, 0.0, s.weight_decay, 0.0};
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  for (int g = 0; g < 4; ++g) {
    if (groups[g].empty()) continue;
    auto options = std::make_unique<torch::optim::AdamWOptions>(s.lr * factors[g]);
    options->betas({s.adam_beta1, s.adam_beta2}).eps(s.adam_epsilon).weight_decay(decays[g]);
    param_groups.emplace_back(groups[g], std::move(options));
    group_factors_.push_back(factors[g]);
  }
  adamw_ = std::make_unique<torch::optim::AdamW>(param_groups, torch::optim::AdamWOptions(s.lr));
}

void TrainingOptimizer::set_lr_multiplier(double multiplier) {
  multiplier_ = multiplier;
  auto& groups = adamw_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    static_cast<torch::optim::AdamWOptions&>(groups[g].options()).lr(base_lr_ * multiplier * group_factors_[g]);
  }
}

int64_t TrainingOptimizer::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters_) n += p.numel();
  return n;
}

void TrainingOptimizer::save(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  adamw_->save(archive);
  // Serialized in memory, then written by io: LibTorch's file writer throws from its destructor
  // when the disk is full, which aborts the process.
  std::ostringstream bytes;
  archive.save_to(bytes);
  io::write_file_atomic(path, bytes.str());
}

void TrainingOptimizer::load(const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    adamw_->load(archive);
  } catch (const c10::Error& e) {
    throw Error(std::string("cannot read the optimizer state: ") + e.what_without_backtrace(), ErrorContext{path, "", -1});
  }
}

}  // namespace ranktune::train
