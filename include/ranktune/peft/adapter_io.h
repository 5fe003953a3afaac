#pragma once
// PEFT-format adapter files: `adapter_config.json` + `adapter_model.safetensors` with PEFT's keys,
//   base_model.model.<module>.lora_A.weight        [r, in]
//   base_model.model.<module>.lora_B.weight        [out, r]
//   base_model.model.<module>.lora_magnitude_vector [out]          (DoRA)
//   base_model.model.<module>.base_layer.bias                     (trained bias of an adapted layer)
//   base_model.model.<module>.<parameter>                         (modules_to_save copies, other biases)
// so an adapter saved here loads in Hugging Face PEFT, and one saved by PEFT loads here.

#include "ranktune/peft/inject.h"
#include "ranktune/peft/lora_config.h"

#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace ranktune::peft {

// PEFT's on-disk key for one adapter tensor of `module`; `kind` is "lora_A", "lora_B" or
// "lora_magnitude_vector".
std::string peft_adapter_key(const std::string& module, const std::string& kind);
// PEFT's on-disk key for a full parameter saved with the adapter (modules_to_save, biases).
std::string peft_parameter_key(const std::string& parameter);

// `config` with what PEFT records about the base model filled in from `model` where unset:
// base_model_name_or_path and task_type (AdaptableModel's answers).
LoraConfig with_model_provenance(LoraConfig config, const torch::nn::Module& model);

// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors, each atomically. The
// config is written as PEFT writes it: inference_mode true, fan_in_fan_out as the adapted layers
// store their weights, provenance from the model where unset. Throws if no layer has the adapter.
void save_adapter(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                  const std::string& dir);

// Copies the weights saved in `dir` (by save_adapter, for the same config) into the existing adapter
// `adapter_name`: its A, B, magnitudes, saved biases and modules_to_save copies, in place (e.g.
// resuming training from a checkpoint into the adapter being trained and its optimizer). Every key
// and shape is checked first; when they differ one error names the file, and nothing changes.
void restore_adapter_weights(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                             const std::string& dir);

struct AdapterLoadReport {
  LoraConfig config;
  std::vector<std::string> adapted_modules;
  std::vector<std::string> loaded_parameters;  // modules_to_save copies and biases, by parameter name
};

// Reads an adapter directory (PEFT's or ours) and attaches it as `adapter_name` to the layers its
// config selects, with the file's weights (modules_to_save as copies, modules_to_save.h). Every
// key and shape is checked first; when they do not fit, one short error names the file, the first
// few missing, unused and mis-shaped tensors with their counts, and whether the base model looks
// wrong, and the model is left unchanged. Biases of adapted layers are read under PEFT's key
// (`<layer>.base_layer.bias`) or, with a warning, ranktune's older `<layer>.bias`; with
// bias="lora_only" they may be absent (PEFT 0.12 does not save them). The adapter is active; it
// trains only with `is_trainable`.
AdapterLoadReport load_adapter(torch::nn::Module& model, const std::string& dir,
                               const std::string& adapter_name = "default", bool is_trainable = false,
                               const InjectOptions& options = {});

}  // namespace ranktune::peft
