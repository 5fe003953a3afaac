#pragma once
// PEFT-format adapter files: `adapter_config.json` + `adapter_model.safetensors` with PEFT's keys,
//   base_model.model.<module>.lora_A.weight        [r, in]
//   base_model.model.<module>.lora_B.weight        [out, r]
//   base_model.model.<module>.lora_magnitude_vector [out]          (DoRA)
//   base_model.model.<module>.<parameter>                         (modules_to_save, trained biases)
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

// Writes `dir`/adapter_config.json (with inference_mode true, as PEFT writes it) and
// `dir`/adapter_model.safetensors, each atomically. Throws if the model has no such adapter.
void save_adapter(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                  const std::string& dir);

struct AdapterLoadReport {
  LoraConfig config;
  std::vector<std::string> adapted_modules;
  std::vector<std::string> loaded_parameters;  // modules_to_save and bias tensors copied into the model
};

// Reads an adapter directory (PEFT's or ours) and attaches it as `adapter_name` to the layers its
// config selects, with the file's weights. Every key and shape is checked first: missing tensors,
// tensors no layer claims and wrong shapes are all listed in one error naming the file, and the
// model is left unchanged. The adapter is active; it trains only with `is_trainable`.
AdapterLoadReport load_adapter(torch::nn::Module& model, const std::string& dir,
                               const std::string& adapter_name = "default", bool is_trainable = false,
                               const InjectOptions& options = {});

}  // namespace ranktune::peft
