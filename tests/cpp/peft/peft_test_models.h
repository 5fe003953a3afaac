#pragma once
// Small models and helpers for the adapter-file and modules_to_save tests: Qwen2- and GPT-2-shaped
// causal LMs (tied or not) with random weights, and adapter files written as PEFT writes them.

#include "ranktune/core/log.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ranktune::testing {

// "qwen2" (biases on q/k/v) or "gpt2" (Conv1D layers), hidden 16, 2 layers, vocab 40.
std::shared_ptr<model::CausalLMImpl> tiny_causal_lm(const std::string& family, bool tied, uint64_t seed = 7);

// A fresh, empty directory under the system's temporary directory.
std::filesystem::path fresh_dir(const std::string& name);

// adapter_config.json as PEFT 0.12 writes it (every field, sorted keys), with `fields` (a JSON
// object's text) replacing the defaults, e.g. R"({"r": 2, "target_modules": ["q_proj"]})".
std::string peft_config_json(const std::string& fields);

// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors.
void write_peft_adapter(const std::filesystem::path& dir, const std::string& config_fields, const io::NamedTensors& tensors);

// The parameter `name` of `m` (throws if absent).
torch::Tensor parameter(torch::nn::Module& m, const std::string& name);

// Token ids [2, 6] in [0, 40).
torch::Tensor tiny_input_ids();

// The warnings logged while alive.
class CapturedWarnings {
 public:
  CapturedWarnings();
  ~CapturedWarnings();
  CapturedWarnings(const CapturedWarnings&) = delete;
  CapturedWarnings& operator=(const CapturedWarnings&) = delete;
  // All of them, one per line.
  std::string text() const;

 private:
  std::vector<std::string> messages_;
  LogSink previous_;
};

}  // namespace ranktune::testing
