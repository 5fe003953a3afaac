#pragma once
// ModelConfig: what ranktune reads from a Hugging Face `config.json`, normalised across the
// supported families (Llama, Mistral, Qwen2 and GPT-2 spell some fields differently).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::model {

// RoPE scaling (config.json `rope_scaling`), as transformers implements it.
struct RopeScaling {
  enum class Type { none, linear, dynamic, llama3 };
  Type type = Type::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"
  std::string model_type;    // "llama", "mistral", "qwen2", "gpt2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-6;            // rms_norm_eps, or layer_norm_epsilon for GPT-2
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;       // bias on q/k/v (and o for Llama's attention_bias)
  bool attention_output_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";   // silu | gelu_new | gelu
  std::optional<int64_t> sliding_window;  // Mistral: attend to at most this many past tokens
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype = "float32";  // as stored in config.json

  // The architectures ranktune implements.
  static const std::vector<std::string>& supported_architectures();

  // Parses config.json text. Throws ranktune::Error naming `source`, the field and the problem,
  // and for an unsupported architecture, listing the supported ones.
  static ModelConfig from_json(const std::string& text, const std::string& source = "");
  // Reads `path`/config.json (or `path` itself when it is a file).
  static ModelConfig load(const std::string& path);

  bool is_gpt2() const { return model_type == "gpt2"; }
};

}  // namespace ranktune::model
