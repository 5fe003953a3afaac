#include "size_limits.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/ScalarType.h>
#include <c10/util/StringUtil.h>

#include <unistd.h>

#include <cctype>
#include <optional>

namespace ranktune::model {
namespace {

// The number of decoder layers the checkpoint holds: 1 + the largest index under `prefix`.
std::optional<int64_t> layer_count(const io::SafetensorsCheckpoint& checkpoint, const std::string& prefix) {
  std::optional<int64_t> count;
  for (const std::string& name : checkpoint.names()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    size_t end = prefix.size();
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end])) != 0) ++end;
    if (end == prefix.size() || end >= name.size() || name[end] != '.' || end - prefix.size() > 9) continue;
    const int64_t index = std::stoll(name.substr(prefix.size(), end - prefix.size()));
    count = std::max(count.value_or(0), index + 1);
  }
  return count;
}

class SizeChecker {
 public:
  SizeChecker(const std::string& config_file, const io::SafetensorsCheckpoint& checkpoint)
      : config_file_(config_file), checkpoint_(checkpoint) {}

  // config.json's `key` (value `value`) must equal dimension `dim` of tensor `name`, if present.
  void dimension(const std::string& key, int64_t value, const std::string& name, size_t dim) const {
    if (!checkpoint_.contains(name)) return;  // load_weights lists missing tensors
    const io::TensorInfo& info = checkpoint_.info(name);
    if (dim >= info.shape.size() || info.shape[dim] == value) return;
    throw Error(c10::str("is ", value, " but the checkpoint's ", name, " has shape ", c10::IntArrayRef(info.shape),
                         " (", info.shape[dim], " in dimension ", dim, ") in ", checkpoint_.path(),
                         "; config.json and the weights must come from the same model"),
                ErrorContext{config_file_, key, -1});
  }

  // `heads` × `head_dim` must equal the rows of projection `name`, if present.
  void heads(const std::string& key, int64_t heads, int64_t head_dim, const std::string& name) const {
    if (!checkpoint_.contains(name)) return;
    const io::TensorInfo& info = checkpoint_.info(name);
    if (info.shape.empty() || info.shape[0] == heads * head_dim) return;
    throw Error(c10::str("is ", heads, " with head_dim ", head_dim, " (", heads * head_dim, " features) but the checkpoint's ",
                         name, " has shape ", c10::IntArrayRef(info.shape), " in ", checkpoint_.path(),
                         "; config.json and the weights must come from the same model"),
                ErrorContext{config_file_, key, -1});
  }

  void layers(const std::string& key, int64_t value, const std::string& prefix) const {
    const std::optional<int64_t> count = layer_count(checkpoint_, prefix);
    if (!count || *count == value) return;
    throw Error(c10::str("is ", value, " but the checkpoint ", checkpoint_.path(), " holds ", *count, " layers (",
                         prefix, "0 to ", prefix, *count - 1, "); config.json and the weights must come from the same model"),
                ErrorContext{config_file_, key, -1});
  }

 private:
  const std::string& config_file_;
  const io::SafetensorsCheckpoint& checkpoint_;
};

// The router and expert widths of the first sparse layer.
void check_moe_sizes(const ModelConfig& c, const SizeChecker& check) {
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    if (!c.moe.sparse(layer)) continue;
    const std::string block = c10::str("model.layers.", layer, c.model_type == "mixtral" ? ".block_sparse_moe." : ".mlp.");
    const std::string experts_key =
        c.model_type == "mixtral" ? "num_local_experts" : c.is_deepseek() ? "n_routed_experts" : "num_experts";
    check.dimension(experts_key, c.moe.num_experts, block + "gate.weight", 0);
    const std::string width_key = c.model_type == "mixtral" ? "intermediate_size" : "moe_intermediate_size";
    check.dimension(width_key, c.moe.expert_intermediate_size,
                    block + (c.model_type == "mixtral" ? "experts.0.w1.weight" : "experts.0.gate_proj.weight"), 0);
    return;
  }
}

[[noreturn]] void throw_outside_vocabulary(int64_t id, const std::string& where, int64_t vocab_size) {
  throw Error(c10::str("token id ", id, " (", where, ") is outside the vocabulary: vocab_size is ", vocab_size,
                       ", so ids are 0 to ", vocab_size - 1));
}

}  // namespace

void check_token_ids(const torch::Tensor& input_ids, int64_t vocab_size) {
  if (!input_ids.defined() || input_ids.numel() == 0) return;
  const at::Tensor outside = (input_ids < 0).logical_or_(input_ids >= vocab_size);
  if (!outside.any().item<bool>()) return;
  const int64_t flat_index = outside.flatten().nonzero()[0][0].item<int64_t>();
  const int64_t id = input_ids.flatten()[flat_index].item<int64_t>();
  std::vector<int64_t> index(static_cast<size_t>(input_ids.dim()));
  int64_t rest = flat_index;
  for (int64_t d = input_ids.dim() - 1; d >= 0; --d) {
    index[static_cast<size_t>(d)] = rest % input_ids.size(d);
    rest /= input_ids.size(d);
  }
  throw_outside_vocabulary(id, c10::str("input_ids", c10::IntArrayRef(index)), vocab_size);
}

void check_token_ids(const std::vector<std::vector<int64_t>>& prompts, int64_t vocab_size) {
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (size_t i = 0; i < prompts[p].size(); ++i) {
      const int64_t id = prompts[p][i];
      if (id < 0 || id >= vocab_size) throw_outside_vocabulary(id, c10::str("prompt ", p, ", position ", i), vocab_size);
    }
  }
}

void check_sizes_against_checkpoint(const ModelConfig& c, const std::string& config_file,
                                    const io::SafetensorsCheckpoint& checkpoint) {
  const SizeChecker check(config_file, checkpoint);
  if (c.is_gpt2()) {
    // GPT-2's Conv1D stores weights as [in, out].
    check.dimension("vocab_size", c.vocab_size, "transformer.wte.weight", 0);
    check.dimension("n_embd", c.hidden_size, "transformer.wte.weight", 1);
    check.dimension("n_positions", c.max_position_embeddings, "transformer.wpe.weight", 0);
    check.layers("n_layer", c.num_hidden_layers, "transformer.h.");
    check.dimension("n_inner", c.intermediate_size, "transformer.h.0.mlp.c_fc.weight", 1);
    return;
  }
  check.dimension("vocab_size", c.vocab_size, "model.embed_tokens.weight", 0);
  check.dimension("hidden_size", c.hidden_size, "model.embed_tokens.weight", 1);
  check.layers("num_hidden_layers", c.num_hidden_layers + c.num_nextn_predict_layers, "model.layers.");
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {  // the first dense MLP
    if (c.moe.sparse(layer)) continue;
    check.dimension("intermediate_size", c.intermediate_size, c10::str("model.layers.", layer, ".mlp.gate_proj.weight"), 0);
    break;
  }
  if (c.is_moe()) check_moe_sizes(c, check);
  if (c.is_mla()) {
    const std::string attn = "model.layers.0.self_attn.";
    check.heads("num_attention_heads", c.num_attention_heads, c.mla.q_head_dim(), attn + (c.mla.q_lora_rank > 0 ? "q_b_proj.weight" : "q_proj.weight"));
    check.dimension("q_lora_rank", c.mla.q_lora_rank, attn + "q_a_proj.weight", 0);
    check.dimension("kv_lora_rank", c.mla.kv_lora_rank, attn + "kv_a_layernorm.weight", 0);
    return;
  }
  // q_proj is [heads × head_dim, hidden], k_proj [kv_heads × head_dim, hidden].
  check.heads("num_attention_heads", c.num_attention_heads, c.head_dim, "model.layers.0.self_attn.q_proj.weight");
  check.heads("num_key_value_heads", c.num_key_value_heads, c.head_dim, "model.layers.0.self_attn.k_proj.weight");
}

double parameter_count(const ModelConfig& c) {
  const double v = c.vocab_size, h = c.hidden_size, i = c.intermediate_size, layers = c.num_hidden_layers;
  const double q = static_cast<double>(c.num_attention_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_key_value_heads) * c.head_dim;
  const double head = c.tie_word_embeddings ? 0 : v * h;
  if (c.is_gpt2()) {
    const double per_layer = h * 3 * h + 3 * h + h * h + h + 2 * h * i + i + h + 4 * h;
    return v * h + static_cast<double>(c.max_position_embeddings) * h + layers * per_layer + 2 * h + head;
  }
  if (!c.is_moe() && !c.is_mla()) {
    const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h + q + 2 * kv + h + 2 * i + h;
    return v * h + layers * per_layer + h + head;
  }
  const MlaConfig& a = c.mla;
  const double heads = static_cast<double>(c.num_attention_heads);
  const double attention =
      c.is_mla() ? (a.q_lora_rank > 0 ? h * a.q_lora_rank + 2.0 * a.q_lora_rank + a.q_lora_rank * heads * a.q_head_dim()
                                       : h * heads * a.q_head_dim()) +
                       h * (a.kv_lora_rank + a.qk_rope_head_dim) + 2.0 * a.kv_lora_rank +
                       a.kv_lora_rank * heads * (a.qk_nope_head_dim + a.v_head_dim) + heads * a.v_head_dim * h + 2 * h
                 : h * q + 2 * h * kv + q * h + q + 2 * kv + h;
  const double experts = static_cast<double>(c.moe.num_experts);
  const double sparse_mlp = experts * 3 * h * static_cast<double>(c.moe.expert_intermediate_size) + experts * h +
                            3 * h * static_cast<double>(c.moe.shared_expert_intermediate_size) + h + experts;
  double total = v * h + h + head;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    total += attention + 2 * h + (c.moe.sparse(layer) ? sparse_mlp : 3 * h * i);
  }
  return total;
}

void check_parameters_fit_memory(const ModelConfig& c, torch::Dtype dtype, const std::string& config_file) {
  const double bytes = parameter_count(c) * static_cast<double>(c10::elementSize(dtype));
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return;
  const double memory = static_cast<double>(pages) * static_cast<double>(page_size);
  if (bytes <= memory) return;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  throw Error(c10::str("the model it describes needs ", bytes / gib, " GiB for its parameters in ", dtype,
                       ", more than this machine's ", memory / gib, " GiB of memory (vocab_size ", c.vocab_size,
                       ", hidden_size ", c.hidden_size, ", intermediate_size ", c.intermediate_size,
                       ", num_hidden_layers ", c.num_hidden_layers, ")"),
              ErrorContext{config_file, "", -1});
}

}  // namespace ranktune::model
