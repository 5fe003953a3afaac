#include "ranktune/model/llama.h"

#include "fused_projections.h"
#include "ranktune/core/strings.h"
#include "size_limits.h"

#include <ATen/ATen.h>

namespace ranktune::model {
namespace {

peft::Linear projection(int64_t in, int64_t out, bool bias, torch::Dtype dtype) {
  return peft::Linear(peft::LinearOptions(in, out).bias(bias).dtype(dtype));
}

}  // namespace

// ---- attention -----------------------------------------------------------------------------------

LlamaAttentionImpl::LlamaAttentionImpl(const ModelConfig& c, torch::Dtype dtype)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  const int64_t q_size = heads_ * head_dim_, kv_size = kv_heads_ * head_dim_;
  q_proj = register_module("q_proj", projection(c.hidden_size, q_size, c.attention_bias, dtype));
  k_proj = register_module("k_proj", projection(c.hidden_size, kv_size, c.attention_bias, dtype));
  v_proj = register_module("v_proj", projection(c.hidden_size, kv_size, c.attention_bias, dtype));
  o_proj = register_module("o_proj", projection(q_size, c.hidden_size, c.attention_output_bias, dtype));
  qkv_ = std::make_shared<const FusedProjections>(std::vector<peft::LinearImpl*>{q_proj.get(), k_proj.get(), v_proj.get()});
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& residual,
                                          const AttentionContext& context, int64_t layer_index) {
  const int64_t batch = x.size(0), seq = x.size(1);
  const std::vector<torch::Tensor> qkv = qkv_->forward(x);
  const torch::Tensor q = qkv[0].view({batch, seq, heads_, head_dim_});
  const torch::Tensor k = qkv[1].view({batch, seq, kv_heads_, head_dim_});
  const torch::Tensor v = qkv[2].view({batch, seq, kv_heads_, head_dim_});
  return o_proj->forward_add(attend(q, k, v, context, layer_index), residual);
}

// ---- MLP -----------------------------------------------------------------------------------------

LlamaMlpImpl::LlamaMlpImpl(const ModelConfig& c, torch::Dtype dtype) : LlamaMlpImpl(c, c.intermediate_size, dtype) {}

LlamaMlpImpl::LlamaMlpImpl(const ModelConfig& c, int64_t intermediate_size, torch::Dtype dtype, const GatedMlpNames& names)
    : act_(c.hidden_act) {
  gate_proj = register_module(names.gate, projection(c.hidden_size, intermediate_size, c.mlp_bias, dtype));
  up_proj = register_module(names.up, projection(c.hidden_size, intermediate_size, c.mlp_bias, dtype));
  down_proj = register_module(names.down, projection(intermediate_size, c.hidden_size, c.mlp_bias, dtype));
  gate_up_ = std::make_shared<const FusedProjections>(std::vector<peft::LinearImpl*>{gate_proj.get(), up_proj.get()});
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  const std::vector<torch::Tensor> gate_up = gate_up_->forward(x);
  return down_proj->forward_add(activation(act_, gate_up[0]) * gate_up[1], residual);
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& x) {
  const std::vector<torch::Tensor> gate_up = gate_up_->forward(x);
  return down_proj->forward(activation(act_, gate_up[0]) * gate_up[1]);
}

// ---- decoder layer -------------------------------------------------------------------------------

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const ModelConfig& c, torch::Dtype dtype) {
  self_attn = register_module("self_attn", LlamaAttention(c, dtype));
  mlp = register_module("mlp", LlamaMlp(c, dtype));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index) {
  const torch::Tensor h = self_attn->forward(input_layernorm(x), x, context, layer_index);
  return mlp->forward(post_attention_layernorm(h), h);
}

// ---- model ---------------------------------------------------------------------------------------

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c, torch::Dtype dtype) {
  embed_tokens = register_module(
      "embed_tokens", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size)));
  embed_tokens->weight.set_data(embed_tokens->weight.to(dtype));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c, dtype));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& c, torch::Dtype dtype)
    : CausalLMImpl(c.architecture, c, dtype), rotary_(c) {
  model = register_module("model", LlamaModel(c, dtype));
  lm_head = register_module("lm_head", make_output_head(c, model->embed_tokens->weight, dtype));
}

CausalLMOutput LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                             const torch::Tensor& labels, KVCache* cache, bool need_logits) {
  check_token_ids(input_ids, config_.vocab_size);
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  torch::Tensor h = model->embed_tokens(input_ids);
  const AttentionContext context =
      rotary_attention_context(rotary_, attention_mask, batch, seq, cache, h.scalar_type(), config_.sliding_window);
  int64_t index = 0;
  for (const auto& layer : *model->layers) {
    auto* decoder = layer->as<LlamaDecoderLayerImpl>();
    const int64_t i = index++;
    // Captured by value: a checkpointed layer runs again during backward, after this returns.
    h = run_layer([decoder, context, i](const torch::Tensor& x) { return decoder->forward(x, context, i); }, h, cache);
  }
  if (cache != nullptr) cache->advance(seq);
  return output_head(model->norm(h), *lm_head, labels, need_logits);
}

bool LlamaForCausalLMImpl::ignorable_checkpoint_key(const std::string& name) const {
  if (ends_with(name, "rotary_emb.inv_freq")) return true;
  return lm_head->weight_is_tied() && name == "lm_head.weight";
}

}  // namespace ranktune::model
