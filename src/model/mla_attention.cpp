#include "ranktune/model/mla_attention.h"

#include "ranktune/model/blocked_attention.h"

#include <ATen/ATen.h>

namespace ranktune::model {
namespace {

// DeepSeek's layer norms inside the attention use eps 1e-6 whatever rms_norm_eps says.
constexpr double kLatentNormEps = 1e-6;

peft::Linear projection(int64_t in, int64_t out, bool bias, torch::Dtype dtype) {
  return peft::Linear(peft::LinearOptions(in, out).bias(bias).dtype(dtype));
}

// DeepSeek's interleave permutation then rotate-half RoPE: x [B, T, heads, d], cos/sin [B, T, d].
torch::Tensor rotate_interleaved(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), d = x.size(3);
  const torch::Tensor halves = x.reshape({b, t, h, d / 2, 2}).transpose(3, 4).reshape({b, t, h, d});
  return apply_rotary(halves, cos, sin);
}

}  // namespace

MlaAttentionImpl::MlaAttentionImpl(const ModelConfig& c, torch::Dtype dtype)
    : mla_(c.mla), heads_(c.num_attention_heads), query_scale_(1.0) {
  const int64_t q_out = heads_ * mla_.q_head_dim();
  if (mla_.q_lora_rank == 0) {
    q_proj = register_module("q_proj", projection(c.hidden_size, q_out, false, dtype));
  } else {
    q_a_proj = register_module("q_a_proj", projection(c.hidden_size, mla_.q_lora_rank, c.attention_bias, dtype));
    q_a_layernorm = register_module("q_a_layernorm", RMSNorm(mla_.q_lora_rank, kLatentNormEps, dtype));
    q_b_proj = register_module("q_b_proj", projection(mla_.q_lora_rank, q_out, false, dtype));
  }
  kv_a_proj_with_mqa = register_module(
      "kv_a_proj_with_mqa", projection(c.hidden_size, mla_.kv_lora_rank + mla_.qk_rope_head_dim, c.attention_bias, dtype));
  kv_a_layernorm = register_module("kv_a_layernorm", RMSNorm(mla_.kv_lora_rank, kLatentNormEps, dtype));
  kv_b_proj = register_module(
      "kv_b_proj", projection(mla_.kv_lora_rank, heads_ * (mla_.qk_nope_head_dim + mla_.v_head_dim), false, dtype));
  o_proj = register_module("o_proj", projection(heads_ * mla_.v_head_dim, c.hidden_size, c.attention_bias, dtype));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::yarn && s.mscale_all_dim != 0.0) {
    const double m = yarn_mscale(s.factor, s.mscale_all_dim);
    query_scale_ = m * m;
  }
}

torch::Tensor MlaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& residual,
                                        const AttentionContext& context, int64_t layer_index) {
  const int64_t b = x.size(0), t = x.size(1);
  const int64_t nope = mla_.qk_nope_head_dim, rope = mla_.qk_rope_head_dim, value = mla_.v_head_dim;
  const torch::Tensor q = (q_proj ? q_proj->forward(x) : q_b_proj->forward(q_a_layernorm(q_a_proj->forward(x))))
                              .view({b, t, heads_, nope + rope});
  const torch::Tensor q_pe = rotate_interleaved(q.narrow(-1, nope, rope), context.cos, context.sin);
  torch::Tensor query = at::cat({q.narrow(-1, 0, nope), q_pe}, -1);
  if (query_scale_ != 1.0) query = query * query_scale_;

  const torch::Tensor kv_a = kv_a_proj_with_mqa->forward(x);
  torch::Tensor latent = kv_a_layernorm(kv_a.narrow(-1, 0, mla_.kv_lora_rank));  // [B, T, r]
  torch::Tensor k_pe =
      rotate_interleaved(kv_a.narrow(-1, mla_.kv_lora_rank, rope).view({b, t, 1, rope}), context.cos, context.sin)
          .view({b, t, rope});
  if (context.cache != nullptr) {  // everything cached so far, this step included
    auto [latents, rotary_keys] = context.cache->update(layer_index, latent.unsqueeze(1), k_pe.unsqueeze(1));
    latent = latents.squeeze(1);
    k_pe = rotary_keys.squeeze(1);
  }
  const int64_t keys = latent.size(1);
  const torch::Tensor kv = kv_b_proj->forward(latent).view({b, keys, heads_, nope + value});
  const torch::Tensor key = at::cat({kv.narrow(-1, 0, nope), k_pe.unsqueeze(2).expand({b, keys, heads_, rope})}, -1);
  const torch::Tensor values = kv.narrow(-1, nope, value);
  torch::Tensor out;
  if (context.cache == nullptr) {
    out = blocked_causal_attention(query, key, values.contiguous(), {}, {}, context.attention_mask);
  } else {
    out = attention(query.transpose(1, 2), key.transpose(1, 2), values.transpose(1, 2), context.bias).transpose(1, 2);
  }
  return o_proj->forward_add(out.reshape({b, t, heads_ * value}), residual);
}

KVCache make_latent_cache(const ModelConfig& c, int64_t batch, int64_t capacity, torch::Dtype dtype) {
  return KVCache(c.num_hidden_layers, batch, 1, capacity, c.mla.kv_lora_rank, c.mla.qk_rope_head_dim,
                 at::TensorOptions().dtype(dtype));
}

}  // namespace ranktune::model
