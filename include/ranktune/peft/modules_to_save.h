#pragma once
// PEFT's modules_to_save. Every adapter whose config names a module gets a trained copy of that
// module's parameters, registered as `<module>.modules_to_save.<adapter>.<parameter>` (PEFT's
// names). The module computes with the active adapter's copy; with adapters disabled, or an
// adapter without a copy active, it computes with its own parameters, which never change — nor
// does a module whose weight is tied to it (a tied output head and the input embeddings).
// With ensure_weight_tying (PEFT >= 0.18) one copy serves both ends of a tied pair instead.
//
// LibTorch modules read their parameters through members, so a copy stands in by pointing those
// members at it: peft::Linear and torch::nn::{Linear, Embedding, LayerNorm} are known; any other
// module type opts in by implementing SubstitutableParameters.

#include "ranktune/peft/lora_config.h"

#include <torch/nn/module.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::peft {

class SubstitutableParameters {
 public:
  virtual ~SubstitutableParameters() = default;
  // Each registered parameter's name and the member the module's forward reads it through.
  virtual std::vector<std::pair<std::string, torch::Tensor*>> parameter_members() = 0;
};

// One tensor of an adapter's copies: every qualified name it is saved under (two for a copy
// shared by a tied pair) and its shape.
struct SavedTensorLayout {
  std::vector<std::string> names;  // e.g. {"model.embed_tokens.weight", "lm_head.weight"}
  std::vector<int64_t> shape;
};

// The modules `config.modules_to_save` selects in `root` (every module whose name ends with an
// entry, as PEFT's endswith; the module's submodules go with it), in model order, then the tied
// partners that compute with a shared copy (ensure_weight_tying); and the tensors the copies will
// have — without changing anything. Throws naming the module when one cannot be copied (a module
// type it cannot substitute, or a layer that carries LoRA adapters).
struct SavedModulesPlan {
  std::vector<std::string> modules;
  std::vector<SavedTensorLayout> tensors;
};
SavedModulesPlan plan_saved_modules(const torch::nn::Module& root, const LoraConfig& config);

// Gives `adapter` the copies `config` asks for (from each module's own parameters) and returns
// the plan it followed. Warns, as PEFT does, about tied weights: a copy on one end of a tied
// pair (without ensure_weight_tying), or ensure_weight_tying with nothing tied to keep.
SavedModulesPlan add_saved_modules(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter);

// The adapter's copies under their qualified names (a shared copy under each of its names).
std::vector<std::pair<std::string, torch::Tensor>> saved_module_tensors(const torch::nn::Module& root,
                                                                        const std::string& adapter);

// Points every saved module at `adapter`'s copy, or at its own parameters (nullopt, or no copy).
void use_saved_modules(torch::nn::Module& root, const std::optional<std::string>& adapter);
// `adapter`'s copies train when `train`; every other copy is frozen.
void mark_saved_modules_trainable(torch::nn::Module& root, const std::optional<std::string>& adapter, bool train);
// Removes the adapter's copies (modules without copies left compute with their own parameters).
void delete_saved_modules(torch::nn::Module& root, const std::string& adapter);
// merge_and_unload: `adapter`'s copies become the modules' own parameters (a tied pair stays tied
// only when one copy serves both ends) and every copy is removed.
void unload_saved_modules(torch::nn::Module& root, const std::optional<std::string>& adapter);

bool has_saved_modules(const torch::nn::Module& root);
// Qualified names of the modules that hold copies (of any adapter).
std::vector<std::string> modules_with_copies(const torch::nn::Module& root);
// Names of the adapters that have copies.
std::vector<std::string> adapters_with_saved_modules(const torch::nn::Module& root);
// True for `<module>.modules_to_save...` names (the copies' own modules).
bool is_inside_saved_copies(const std::string& qualified_name);

}  // namespace ranktune::peft
