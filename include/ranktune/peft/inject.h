#pragma once
// Attaching adapters to a model by name, and the operations that act on every adaptable layer of
// a model at once (PEFT's LoraModel, minus the module surgery: our layers are adaptable already).

#include "ranktune/peft/adaptable_model.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/lora_config.h"

#include <torch/arg.h>
#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::peft {

struct InjectOptions {
  // The output head's qualified name; "all-linear" leaves it out (as PEFT does). Unset: the
  // model's own (AdaptableModel::output_head_name), else "lm_head".
  TORCH_ARG(std::optional<std::string>, output_head) = std::nullopt;
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
  std::vector<std::string> modules_to_save;   // qualified names given a trained copy
  ParameterCounts parameters;                 // after injection
  std::string summary() const { return parameters.summary(); }
};

// Attaches adapter `adapter_name` to every peft::Linear under `root` that `config` selects, gives
// it a trained copy of each module in modules_to_save (modules_to_save.h; such a module is not
// also adapted), then sets what trains as PEFT does: every parameter is frozen except the active
// adapters' weights and copies, and biases per config.bias (nothing trains with inference_mode).
// The new adapter is active; adapters already attached keep their state. Throws ranktune::Error,
// leaving the model unchanged, when the config is invalid, the name is taken, or nothing matches
// (the message lists some module names that exist).
InjectReport inject(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter_name = "default",
                    const InjectOptions& options = {});

// Sets requires_grad as PEFT does after injection or set_adapter (see inject()).
void mark_trainable(torch::nn::Module& root, const LoraConfig& config, const std::vector<std::string>& active_adapters);

// Every parameter once (a tensor registered under two names counts once, as PyTorch lists it).
ParameterCounts count_parameters(const torch::nn::Module& root);

// ---- operations on every adaptable layer ---------------------------------------------------------
// The adapters active on any layer, in each layer's order (the layers hold this state).
std::vector<std::string> active_adapters(const torch::nn::Module& root);
// Adapters are enabled on the layers (true for a model without adaptable layers).
bool adapters_enabled(const torch::nn::Module& root);
// Makes exactly these adapters active everywhere (layers without them run their base; saved
// modules compute with the adapter's copy). With modules_to_save copies in the model only one
// adapter can be active (as in PEFT).
void set_active_adapters(torch::nn::Module& root, const std::vector<std::string>& names);
void set_adapters_enabled(torch::nn::Module& root, bool enabled);
// Removes the adapter (its layers' weights and its copies); throws if no layer has it.
void delete_adapter(torch::nn::Module& root, const std::string& name);
// Merges (default: the active adapters) into the base weights. With `safe`, each layer's result is
// checked for NaN/Inf before it is written; the error names the layer and the adapter. On failure
// exactly what this call merged is unmerged again, on every layer.
void merge_adapters(torch::nn::Module& root, bool safe = false, const std::vector<std::string>& names = {});
void unmerge_adapters(torch::nn::Module& root);
// Removes every adapter without merging (what is merged already stays folded in); as PEFT's
// unload, the active adapter's modules_to_save copies become the modules' own parameters.
void unload(torch::nn::Module& root);
// Merges the active adapters, then unload(): a plain model remains.
void merge_and_unload(torch::nn::Module& root, bool safe = false);
// Copies adapter `from`'s weights (A, B, magnitude and copies) into adapter `to`, which has the
// same shapes on the same layers (e.g. restoring a checkpoint into the adapter being trained).
void copy_adapter_weights(torch::nn::Module& root, const std::string& from, const std::string& to);

}  // namespace ranktune::peft
