#include "peft/peft_test_models.h"

#include "ranktune/io/file.h"
#include "ranktune/model/config.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace ranktune::testing {

std::shared_ptr<model::CausalLMImpl> tiny_causal_lm(const std::string& family, bool tied, uint64_t seed) {
  const std::string tie = tied ? "true" : "false";
  const std::string json = family == "gpt2"
      ? R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 16, "n_head": 2, "n_layer": 2, "n_positions": 16,
           "vocab_size": 40, "tie_word_embeddings": )" + tie + "}"
      : R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 16, "intermediate_size": 24,
           "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40,
           "max_position_embeddings": 16, "tie_word_embeddings": )" + tie + "}";
  at::manual_seed(seed);
  auto model = model::create_causal_lm(model::ModelConfig::from_json(json, family + "/config.json"));
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(at::randn_like(p), 0.1);  // biases and norms away from 0 and 1
  model->eval();
  return model;
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("ranktune_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string peft_config_json(const std::string& fields) {
  nlohmann::json config = nlohmann::json::parse(R"({
    "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": null, "bias": "none",
    "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layer_replication": null,
    "layers_pattern": null, "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 8, "lora_dropout": 0.0,
    "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 8,
    "rank_pattern": {}, "revision": null, "target_modules": null, "task_type": "CAUSAL_LM", "use_dora": false,
    "use_rslora": false})");
  config.update(nlohmann::json::parse(fields));
  return config.dump(2);
}

void write_peft_adapter(const std::filesystem::path& dir, const std::string& config_fields, const io::NamedTensors& tensors) {
  std::filesystem::create_directories(dir);
  io::write_file_atomic((dir / "adapter_config.json").string(), peft_config_json(config_fields));
  io::save_safetensors((dir / "adapter_model.safetensors").string(), tensors);
}

torch::Tensor parameter(torch::nn::Module& m, const std::string& name) { return m.named_parameters()[name]; }

torch::Tensor tiny_input_ids() {
  return at::tensor({3, 17, 5, 39, 0, 22, 8, 8, 1, 30, 12, 4}, at::TensorOptions().dtype(torch::kLong)).view({2, 6});
}

CapturedWarnings::CapturedWarnings() {
  previous_ = set_log_sink([this](LogLevel level, const std::string& m) {
    if (level == LogLevel::warning) messages_.push_back(m);
  });
}

CapturedWarnings::~CapturedWarnings() { set_log_sink(previous_); }

std::string CapturedWarnings::text() const {
  std::string out;
  for (const auto& m : messages_) out += m + "\n";
  return out;
}

}  // namespace ranktune::testing
