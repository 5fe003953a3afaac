#include "ranktune/model/moe_causal_lm.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "size_limits.h"

#include <ATen/ATen.h>

#include <memory>

namespace ranktune::model {

// ---- decoder layer -------------------------------------------------------------------------------

MoeDecoderLayerImpl::MoeDecoderLayerImpl(const ModelConfig& c, int64_t layer_index, torch::Dtype dtype) {
  if (c.is_mla()) latent_attn = register_module("self_attn", MlaAttention(c, dtype));
  else self_attn = register_module("self_attn", LlamaAttention(c, dtype));
  if (c.moe.sparse(layer_index)) moe = register_module(c.model_type == "mixtral" ? "block_sparse_moe" : "mlp", SparseMoeBlock(c, dtype));
  else dense_mlp = register_module("mlp", LlamaMlp(c, dtype));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
}

torch::Tensor MoeDecoderLayerImpl::forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index,
                                           std::vector<torch::Tensor>* router_logits) {
  const torch::Tensor normed = input_layernorm(x);
  const torch::Tensor h = latent_attn ? latent_attn->forward(normed, x, context, layer_index)
                                      : self_attn->forward(normed, x, context, layer_index);
  if (dense_mlp) return dense_mlp->forward(post_attention_layernorm(h), h);
  return h + moe->forward(post_attention_layernorm(h), router_logits);
}

// ---- model ---------------------------------------------------------------------------------------

MoeModelImpl::MoeModelImpl(const ModelConfig& c, torch::Dtype dtype) {
  embed_tokens = register_module(
      "embed_tokens", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size)));
  embed_tokens->weight.set_data(embed_tokens->weight.to(dtype));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(MoeDecoderLayer(c, i, dtype));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.norm_eps, dtype));
}

MoeForCausalLMImpl::MoeForCausalLMImpl(const ModelConfig& c, torch::Dtype dtype)
    : CausalLMImpl(c.architecture, c, dtype), rotary_(c, c.is_mla() ? c.mla.qk_rope_head_dim : 0) {
  model = register_module("model", MoeModel(c, dtype));
  lm_head = register_module("lm_head", make_output_head(c, model->embed_tokens->weight, dtype));
}

KVCache MoeForCausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  if (config_.is_mla()) return make_latent_cache(config_, batch, capacity, dtype_);
  return CausalLMImpl::make_cache(batch, capacity);
}

CausalLMOutput MoeForCausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                           const torch::Tensor& labels, KVCache* cache, bool need_logits) {
  check_token_ids(input_ids, config_.vocab_size);
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  torch::Tensor h = model->embed_tokens(input_ids);
  const AttentionContext context =
      rotary_attention_context(rotary_, attention_mask, batch, seq, cache, h.scalar_type(), config_.sliding_window);
  // transformers computes the load-balancing loss only when asked for the router logits.
  const bool aux_loss = config_.moe.output_router_logits && config_.is_moe() && cache == nullptr;
  if (aux_loss && gradient_checkpointing_ && is_training() && at::GradMode::is_enabled()) {
    // A checkpointed layer's first forward records no graph, so the aux loss would send no
    // gradient to anything before the routers: refuse rather than train on part of the loss.
    throw Error("output_router_logits (the router aux loss) does not work with gradient checkpointing yet: turn one off");
  }
  // Shared with the layer closures, which may outlive this call (a checkpointed layer runs again
  // in backward).
  auto router_logits = std::make_shared<std::vector<torch::Tensor>>();
  std::vector<torch::Tensor>* sink = aux_loss ? router_logits.get() : nullptr;
  int64_t index = 0;
  for (const auto& layer : *model->layers) {
    auto* decoder = layer->as<MoeDecoderLayerImpl>();
    const int64_t i = index++;
    // Captured by value: a checkpointed layer runs again during backward, after this returns.
    h = run_layer(
        [decoder, context, i, sink, router_logits](const torch::Tensor& x) { return decoder->forward(x, context, i, sink); },
        h, cache);
  }
  if (cache != nullptr) cache->advance(seq);
  CausalLMOutput out = output_head(model->norm(h), *lm_head, labels, need_logits);
  if (aux_loss && !router_logits->empty()) {
    out.aux_loss = load_balancing_loss(*router_logits, config_.moe.num_experts, config_.moe.num_experts_per_tok, attention_mask);
    if (out.loss.defined()) out.loss = out.loss + config_.moe.router_aux_loss_coef * out.aux_loss;
  }
  return out;
}

bool MoeForCausalLMImpl::ignorable_checkpoint_key(const std::string& name) const {
  if (ends_with(name, "rotary_emb.inv_freq")) return true;
  // DeepSeek-V3's multi-token-prediction layers follow the decoder layers; they are not run.
  for (int64_t i = 0; i < config_.num_nextn_predict_layers; ++i) {
    if (starts_with(name, "model.layers." + std::to_string(config_.num_hidden_layers + i) + ".")) return true;
  }
  return lm_head->weight_is_tied() && name == "lm_head.weight";
}

}  // namespace ranktune::model
