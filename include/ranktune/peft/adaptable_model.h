#pragma once
// AdaptableModel: what attaching adapters needs to know about a model that the module tree does
// not say by itself. ranktune's causal LMs implement it; any other torch::nn::Module root works
// too, with the defaults below (or InjectOptions' explicit values).
//
//   class MyModelImpl : public torch::nn::Module, public ranktune::peft::AdaptableModel { ... };

#include "ranktune/peft/linear.h"

#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::peft {

using NamedLinear = std::pair<std::string, std::shared_ptr<LinearImpl>>;

class AdaptableModel {
 public:
  virtual ~AdaptableModel() = default;
  // The output head's qualified name (excluded from target_modules="all-linear", as PEFT does).
  virtual std::string output_head_name() const = 0;
  // Every adaptable layer with its qualified name, in model order.
  virtual std::vector<NamedLinear> adaptable_layers() const = 0;
  // Provenance written to adapter_config.json when the config leaves it unset: the directory or
  // hub name the model was loaded from, and PEFT's task type ("CAUSAL_LM"). Empty: unknown.
  virtual std::string name_or_path() const { return ""; }
  virtual std::string task_type() const { return ""; }
};

// Every peft::Linear under `root`, with its qualified name, in registration order.
std::vector<NamedLinear> find_linears(const torch::nn::Module& root);

// The model as inject and the adapter files see it: the AdaptableModel's answers when `root` is
// one, else find_linears(root) and "lm_head". An explicit `output_head` overrides either.
struct ModelView {
  std::string output_head;
  std::vector<NamedLinear> layers;
  std::string name_or_path;
  std::string task_type;
  std::vector<std::string> layer_names() const;
};
ModelView view_of(const torch::nn::Module& root, const std::optional<std::string>& output_head = std::nullopt);

}  // namespace ranktune::peft
