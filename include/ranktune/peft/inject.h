#pragma once
// Attaching adapters to a model by name, and the operations that act on every adaptable layer of
// a model at once (PEFT's LoraModel, minus the module surgery: our layers are adaptable already).

#include "ranktune/peft/linear.h"
#include "ranktune/peft/lora_config.h"

#include <torch/arg.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::peft {

struct InjectOptions {
  // The output head's qualified name; "all-linear" leaves it out (as PEFT does).
  TORCH_ARG(std::string, output_head) = "lm_head";
};

struct ParameterCounts {
  int64_t trainable = 0;
  int64_t total = 0;
  double trainable_percent() const { return total == 0 ? 0.0 : 100.0 * static_cast<double>(trainable) / static_cast<double>(total); }
  // PEFT's print_trainable_parameters line:
  // "trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330"
  std::string summary() const;
};

struct InjectReport {
  std::string adapter_name;
  std::vector<std::string> adapted_modules;   // qualified names, in model order
  std::vector<std::string> modules_to_save;   // qualified names made trainable in full
  ParameterCounts parameters;                 // after injection
  std::string summary() const { return parameters.summary(); }
};

using NamedLinear = std::pair<std::string, std::shared_ptr<LinearImpl>>;

// Every peft::Linear under `root`, with its qualified name, in registration order.
std::vector<NamedLinear> find_linears(const torch::nn::Module& root);

// Attaches adapter `adapter_name` to every peft::Linear under `root` that `config` selects, then
// sets what trains as PEFT does: every parameter is frozen except the active adapters' weights,
// biases per config.bias, and the parameters of modules_to_save (nothing trains with
// inference_mode). The new adapter is active; adapters already attached keep their state.
// Throws ranktune::Error, leaving the model unchanged, when the config is invalid, the name is
// taken, or nothing matches (the message lists some module names that exist).
InjectReport inject(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter_name = "default",
                    const InjectOptions& options = {});

// Sets requires_grad as PEFT does after injection or set_adapter (see inject()).
void mark_trainable(torch::nn::Module& root, const LoraConfig& config, const std::vector<std::string>& active_adapters,
                    const InjectOptions& options = {});

ParameterCounts count_parameters(const torch::nn::Module& root);

// ---- operations on every adaptable layer ---------------------------------------------------------
// Makes exactly these adapters active everywhere (layers without them run their base).
void set_active_adapters(torch::nn::Module& root, const std::vector<std::string>& names);
void set_adapters_enabled(torch::nn::Module& root, bool enabled);
// Removes the adapter from every layer; throws if no layer has it.
void delete_adapter(torch::nn::Module& root, const std::string& name);
// Merges (default: the active adapters) into the base weights. With `safe`, each layer's result is
// checked for NaN/Inf before it is written; the error names the layer and the adapter.
void merge_adapters(torch::nn::Module& root, bool safe = false, const std::vector<std::string>& names = {});
void unmerge_adapters(torch::nn::Module& root);
// Merges the active adapters, then removes every adapter: a plain model remains.
void merge_and_unload(torch::nn::Module& root, bool safe = false);

}  // namespace ranktune::peft
