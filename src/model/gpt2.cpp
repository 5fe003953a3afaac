#include "ranktune/model/gpt2.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "size_limits.h"

#include <ATen/ATen.h>

namespace ranktune::model {
namespace {

// Conv1D layout: weight [in, out].
peft::Linear conv1d(int64_t in, int64_t out, torch::Dtype dtype) {
  return peft::Linear(peft::LinearOptions(in, out).bias(true).fan_in_fan_out(true).dtype(dtype));
}

torch::nn::LayerNorm layer_norm(const ModelConfig& c, torch::Dtype dtype) {
  torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.norm_eps));
  norm->to(dtype);
  return norm;
}

torch::nn::Embedding embedding(int64_t n, int64_t dim, torch::Dtype dtype) {
  torch::nn::Embedding e(torch::nn::EmbeddingOptions(n, dim));
  e->weight.set_data(e->weight.to(dtype));
  return e;
}

}  // namespace

GPT2AttentionImpl::GPT2AttentionImpl(const ModelConfig& c, torch::Dtype dtype)
    : heads_(c.num_attention_heads), head_dim_(c.head_dim) {
  c_attn = register_module("c_attn", conv1d(c.hidden_size, 3 * c.hidden_size, dtype));
  c_proj = register_module("c_proj", conv1d(c.hidden_size, c.hidden_size, dtype));
}

torch::Tensor GPT2AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& residual,
                                         const AttentionContext& context, int64_t layer_index) {
  const int64_t batch = x.size(0), seq = x.size(1), hidden = heads_ * head_dim_;
  const auto qkv = c_attn(x).split(hidden, -1);
  auto heads = [&](const torch::Tensor& t) { return t.reshape({batch, seq, heads_, head_dim_}); };
  return c_proj->forward_add(attend(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), context, layer_index), residual);
}

GPT2MlpImpl::GPT2MlpImpl(const ModelConfig& c, torch::Dtype dtype) : act_(c.hidden_act) {
  c_fc = register_module("c_fc", conv1d(c.hidden_size, c.intermediate_size, dtype));
  c_proj = register_module("c_proj", conv1d(c.intermediate_size, c.hidden_size, dtype));
}

torch::Tensor GPT2MlpImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return c_proj->forward_add(activation(act_, c_fc(x)), residual);
}

GPT2BlockImpl::GPT2BlockImpl(const ModelConfig& c, torch::Dtype dtype) {
  ln_1 = register_module("ln_1", layer_norm(c, dtype));
  attn = register_module("attn", GPT2Attention(c, dtype));
  ln_2 = register_module("ln_2", layer_norm(c, dtype));
  mlp = register_module("mlp", GPT2Mlp(c, dtype));
}

torch::Tensor GPT2BlockImpl::forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index) {
  const torch::Tensor h = attn->forward(ln_1(x), x, context, layer_index);
  return mlp->forward(ln_2(h), h);
}

GPT2ModelImpl::GPT2ModelImpl(const ModelConfig& c, torch::Dtype dtype) {
  wte = register_module("wte", embedding(c.vocab_size, c.hidden_size, dtype));
  wpe = register_module("wpe", embedding(c.max_position_embeddings, c.hidden_size, dtype));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) h->push_back(GPT2Block(c, dtype));
  ln_f = register_module("ln_f", layer_norm(c, dtype));
}

GPT2LMHeadModelImpl::GPT2LMHeadModelImpl(const ModelConfig& c, torch::Dtype dtype)
    : CausalLMImpl(c.architecture, c, dtype) {
  transformer = register_module("transformer", GPT2Model(c, dtype));
  lm_head = register_module("lm_head", make_output_head(c, transformer->wte->weight, dtype));
}

CausalLMOutput GPT2LMHeadModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                            const torch::Tensor& labels, KVCache* cache, bool need_logits) {
  check_token_ids(input_ids, config_.vocab_size);
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  const int64_t past = cache != nullptr ? cache->length() : 0;
  RANKTUNE_CHECK(past + seq <= config_.max_position_embeddings, "sequence of ", past + seq,
                 " tokens exceeds GPT-2's ", config_.max_position_embeddings, " positions (n_positions)");
  const torch::Tensor positions = position_ids(attention_mask, batch, seq, past);
  torch::Tensor h = transformer->wte(input_ids) + transformer->wpe(positions);
  AttentionContext context;
  context.attention_mask = attention_mask;
  context.cache = cache;
  if (cache != nullptr) context.bias = attention_bias(attention_mask, batch, seq, past, h.scalar_type());
  int64_t index = 0;
  for (const auto& block : *transformer->h) {
    auto* layer = block->as<GPT2BlockImpl>();
    const int64_t i = index++;
    // Captured by value: a checkpointed layer runs again during backward, after this returns.
    h = run_layer([layer, context, i](const torch::Tensor& x) { return layer->forward(x, context, i); }, h, cache);
  }
  if (cache != nullptr) cache->advance(seq);
  return output_head(transformer->ln_f(h), *lm_head, labels, need_logits);
}

bool GPT2LMHeadModelImpl::ignorable_checkpoint_key(const std::string& name) const {
  // transformers saves the causal-mask buffers of older GPT-2 checkpoints, and may save the
  // tied head.
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
         (lm_head->weight_is_tied() && name == "lm_head.weight");
}

}  // namespace ranktune::model
