#include "config_fields.h"

#include <algorithm>

namespace ranktune::model {
namespace {

int64_t non_negative(io::JsonFields& f, const std::string& key, int64_t default_value) {
  if (!f.has_value(key)) return default_value;
  const int64_t v = f.get_int(key);
  if (v < 0) f.fail(key, "must be >= 0, got " + std::to_string(v));
  return v;
}

void parse_router_aux_loss(io::JsonFields& f, MoeConfig& m) {
  m.router_aux_loss_coef = f.has_value("router_aux_loss_coef") ? f.get_number("router_aux_loss_coef") : 0.001;
  if (!(m.router_aux_loss_coef >= 0)) f.fail("router_aux_loss_coef", "must be >= 0");
  m.output_router_logits = f.has_value("output_router_logits") && f.get_bool("output_router_logits");
}

void parse_mixtral(io::JsonFields& f, ModelConfig& c) {
  MoeConfig& m = c.moe;
  m.num_experts = required_positive(f, "num_local_experts");
  m.num_experts_per_tok = required_positive(f, "num_experts_per_tok");
  m.expert_intermediate_size = c.intermediate_size;  // Mixtral's experts are its only MLPs
  m.norm_topk_prob = true;                            // Mixtral always renormalises the top-k
  m.sparse_layers.assign(static_cast<size_t>(c.num_hidden_layers), true);
  if (f.has_value("router_jitter_noise") && f.get_number("router_jitter_noise") != 0.0) {
    f.fail("router_jitter_noise", "is not supported (ranktune's router adds no training noise): set it to 0");
  }
  parse_router_aux_loss(f, m);
}

void parse_qwen2_moe(io::JsonFields& f, ModelConfig& c) {
  MoeConfig& m = c.moe;
  m.num_experts = f.has_value("num_experts") ? non_negative(f, "num_experts", 0) : 60;
  m.num_experts_per_tok = f.has_value("num_experts_per_tok") ? positive(f, "num_experts_per_tok") : 4;
  m.expert_intermediate_size = f.has_value("moe_intermediate_size") ? positive(f, "moe_intermediate_size") : 1408;
  m.shared_expert_intermediate_size =
      f.has_value("shared_expert_intermediate_size") ? positive(f, "shared_expert_intermediate_size") : 5632;
  m.shared_expert_gate = true;
  m.norm_topk_prob = f.has_value("norm_topk_prob") && f.get_bool("norm_topk_prob");
  const int64_t step = f.has_value("decoder_sparse_step") ? positive(f, "decoder_sparse_step") : 1;
  // mlp_only_layers (transformers after 4.40): these layers keep a dense MLP.
  std::vector<int64_t> dense_layers;
  if (f.has_value("mlp_only_layers")) dense_layers = f.get_int_list("mlp_only_layers");
  for (int64_t i : dense_layers) {
    if (i < 0 || i >= c.num_hidden_layers) {
      f.fail("mlp_only_layers", "has layer " + std::to_string(i) + ", outside 0.." + std::to_string(c.num_hidden_layers - 1));
    }
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const bool dense = std::find(dense_layers.begin(), dense_layers.end(), i) != dense_layers.end();
    m.sparse_layers.push_back(!dense && (i + 1) % step == 0);
  }
  parse_router_aux_loss(f, m);
}

void parse_deepseek(io::JsonFields& f, ModelConfig& c) {
  MoeConfig& m = c.moe;
  const bool v3 = c.model_type == "deepseek_v3";
  if (f.has_value("ep_size") && f.get_int("ep_size") != 1) f.fail("ep_size", "must be 1 (no expert parallelism)");
  m.num_experts = f.has_value("n_routed_experts") ? positive(f, "n_routed_experts") : 0;  // null: a dense model
  if (m.num_experts == 0) return;
  m.num_experts_per_tok = required_positive(f, "num_experts_per_tok");
  m.expert_intermediate_size = required_positive(f, "moe_intermediate_size");
  m.shared_expert_intermediate_size =
      m.expert_intermediate_size * (f.has_value("n_shared_experts") ? positive(f, "n_shared_experts") : 0);
  const std::string scoring = f.has_value("scoring_func") ? f.get_string("scoring_func") : (v3 ? "sigmoid" : "softmax");
  // Each version's code implements one scoring function.
  if (scoring != (v3 ? "sigmoid" : "softmax")) {
    f.fail("scoring_func", "'" + scoring + "' is not supported for " + c.architecture + "; supported: " + (v3 ? "sigmoid" : "softmax"));
  }
  m.scoring = v3 ? MoeConfig::Scoring::sigmoid : MoeConfig::Scoring::softmax;
  const std::string method = f.has_value("topk_method") ? f.get_string("topk_method") : (v3 ? "noaux_tc" : "greedy");
  if (!v3 && method == "greedy") m.topk_method = MoeConfig::TopK::greedy;
  else if (!v3 && method == "group_limited_greedy") m.topk_method = MoeConfig::TopK::group_limited_greedy;
  else if (v3 && method == "noaux_tc") m.topk_method = MoeConfig::TopK::noaux_tc;
  else f.fail("topk_method", "'" + method + "' is not supported for " + c.architecture + "; supported: " + (v3 ? "noaux_tc" : "greedy, group_limited_greedy"));
  if (m.topk_method != MoeConfig::TopK::greedy) {
    m.n_group = required_positive(f, "n_group");
    m.topk_group = required_positive(f, "topk_group");
    if (m.num_experts % m.n_group != 0) f.fail("n_group", "must divide n_routed_experts (" + std::to_string(m.num_experts) + ")");
    if (m.topk_group > m.n_group) f.fail("topk_group", "must be at most n_group (" + std::to_string(m.n_group) + ")");
    if (m.topk_method == MoeConfig::TopK::noaux_tc && m.num_experts / m.n_group < 2) {
      f.fail("n_group", "leaves fewer than 2 experts per group (noaux_tc scores a group by its best two)");
    }
    if (m.num_experts_per_tok > m.topk_group * (m.num_experts / m.n_group)) {
      f.fail("num_experts_per_tok", "is more than the experts in topk_group groups (" +
                                        std::to_string(m.topk_group * (m.num_experts / m.n_group)) + ")");
    }
  }
  // DeepSeek normalises only when top_k > 1; V2 scales only what it did not normalise, V3 always.
  m.norm_topk_prob = f.has_value("norm_topk_prob") && f.get_bool("norm_topk_prob") && m.num_experts_per_tok > 1;
  m.routed_scaling_factor = f.has_value("routed_scaling_factor") ? f.get_number("routed_scaling_factor") : 1.0;
  if (!(m.routed_scaling_factor > 0)) f.fail("routed_scaling_factor", "must be positive");
  if (!v3 && m.norm_topk_prob) m.routed_scaling_factor = 1.0;
  const int64_t first_dense = non_negative(f, "first_k_dense_replace", 0);
  const int64_t frequency = f.has_value("moe_layer_freq") ? positive(f, "moe_layer_freq") : 1;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) m.sparse_layers.push_back(i >= first_dense && i % frequency == 0);
  c.num_nextn_predict_layers = non_negative(f, "num_nextn_predict_layers", 0);
}

}  // namespace

void parse_moe(io::JsonFields& f, ModelConfig& c) {
  if (c.model_type == "mixtral") parse_mixtral(f, c);
  else if (c.model_type == "qwen2_moe") parse_qwen2_moe(f, c);
  else if (c.is_deepseek()) parse_deepseek(f, c);
  else return;
  const MoeConfig& m = c.moe;
  if (m.num_experts > 0 && m.num_experts_per_tok > m.num_experts) {
    f.fail("num_experts_per_tok", "is " + std::to_string(m.num_experts_per_tok) + ", more than the " +
                                      std::to_string(m.num_experts) + " experts");
  }
}

void parse_mla(io::JsonFields& f, ModelConfig& c) {
  MlaConfig& a = c.mla;
  a.q_lora_rank = f.has_value("q_lora_rank") ? positive(f, "q_lora_rank") : 0;  // null: a plain q_proj
  a.kv_lora_rank = required_positive(f, "kv_lora_rank");
  a.qk_nope_head_dim = required_positive(f, "qk_nope_head_dim");
  a.qk_rope_head_dim = required_positive(f, "qk_rope_head_dim");
  a.v_head_dim = required_positive(f, "v_head_dim");
  if (a.qk_rope_head_dim % 2 != 0) f.fail("qk_rope_head_dim", "must be even (rotary pairs)");
}

}  // namespace ranktune::model
