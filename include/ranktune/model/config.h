#pragma once
// ModelConfig: what ranktune reads from a Hugging Face `config.json`, normalised across the
// supported families (Llama, Mistral, Qwen2, GPT-2, and the mixture-of-experts Mixtral, Qwen2-MoE
// and DeepSeek-V2/V3 spell some fields differently).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::model {

// RoPE scaling (config.json `rope_scaling`), as transformers implements it.
struct RopeScaling {
  enum class Type { none, linear, dynamic, llama3, yarn };
  Type type = Type::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3 (8192) and yarn (4096 when absent)
  // yarn (DeepSeek-V2/V3): frequencies blended between beta_fast and beta_slow rotations over the
  // original context; cos/sin scaled by mscale(factor, mscale) / mscale(factor, mscale_all_dim),
  // and the attention's softmax scale by mscale(factor, mscale_all_dim)².
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

// The mixture-of-experts feed-forward of Mixtral, Qwen2-MoE and DeepSeek-V2/V3, normalised: a
// router scores the experts, each token goes to its top `num_experts_per_tok`, and their outputs
// are summed with the routing weights (plus shared experts that see every token).
struct MoeConfig {
  enum class Scoring { softmax, sigmoid };
  // greedy: top-k over all experts. group_limited_greedy (DeepSeek-V2): the best topk_group of
  // n_group groups by their best score, then top-k inside them. noaux_tc (DeepSeek-V3): groups by
  // the sum of their two best (score + e_score_correction_bias), experts chosen on the biased
  // scores, weights from the unbiased ones.
  enum class TopK { greedy, group_limited_greedy, noaux_tc };

  int64_t num_experts = 0;  // routed experts (num_local_experts / num_experts / n_routed_experts); 0: dense
  int64_t num_experts_per_tok = 0;
  int64_t expert_intermediate_size = 0;  // each routed expert's MLP width
  Scoring scoring = Scoring::softmax;
  TopK topk_method = TopK::greedy;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  // The chosen weights are divided by their sum (DeepSeek adds 1e-20), then multiplied by
  // routed_scaling_factor. Families that scale only unnormalised weights (DeepSeek-V2) or not at
  // all (Mixtral, Qwen2-MoE) have it set to 1 where it does not apply.
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  // Shared experts: one MLP of this width that sees every token (0: none); Qwen2-MoE gates its
  // output with sigmoid(shared_expert_gate(x)).
  int64_t shared_expert_intermediate_size = 0;
  bool shared_expert_gate = false;
  // Which decoder layers are sparse (the others have a dense MLP of intermediate_size).
  std::vector<bool> sparse_layers;
  // transformers' load-balancing loss (Mixtral, Qwen2-MoE): with output_router_logits and labels,
  // loss += router_aux_loss_coef · aux_loss.
  double router_aux_loss_coef = 0.001;
  bool output_router_logits = false;

  bool sparse(int64_t layer) const { return num_experts > 0 && sparse_layers.at(static_cast<size_t>(layer)); }
};

// DeepSeek's multi-head latent attention: queries through an optional low-rank bottleneck
// (q_lora_rank), keys and values from a shared compressed latent of width kv_lora_rank plus one
// decoupled rotary key of qk_rope_head_dim shared by all heads.
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0: a plain q_proj
  int64_t kv_lora_rank = 0;  // 0: not MLA
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t q_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM", ..., "DeepseekV3ForCausalLM" (supported_architectures())
  std::string model_type;    // "llama", "mistral", "qwen2", "gpt2", "mixtral", "qwen2_moe", "deepseek_v2", "deepseek_v3"
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
  MoeConfig moe;  // num_experts == 0 for dense models
  MlaConfig mla;  // kv_lora_rank == 0 without MLA
  // DeepSeek-V3's multi-token-prediction layers: stored after the decoder layers, not run.
  int64_t num_nextn_predict_layers = 0;

  // The architectures ranktune implements.
  static const std::vector<std::string>& supported_architectures();

  // Parses config.json text. Throws ranktune::Error naming `source`, the field and the problem,
  // and for an unsupported architecture, listing the supported ones.
  static ModelConfig from_json(const std::string& text, const std::string& source = "");
  // Reads `path`/config.json (or `path` itself when it is a file).
  static ModelConfig load(const std::string& path);

  bool is_gpt2() const { return model_type == "gpt2"; }
  bool is_moe() const { return moe.num_experts > 0; }
  bool is_mla() const { return mla.kv_lora_rank > 0; }
  bool is_deepseek() const { return model_type == "deepseek_v2" || model_type == "deepseek_v3"; }
};

}  // namespace ranktune::model
