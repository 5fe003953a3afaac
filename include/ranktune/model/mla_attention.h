#pragma once
// DeepSeek's multi-head latent attention (DeepSeek-V2, §2.1), as DeepSeek's modeling_deepseek.py
// computes it. Queries: q_proj(x), or q_b_proj(q_a_layernorm(q_a_proj(x))) with a low-rank
// bottleneck. Keys and values: kv_a_proj_with_mqa(x) gives a compressed latent c (kv_lora_rank)
// and one rotary key k_pe (qk_rope_head_dim, shared by every head); kv_b_proj(kv_a_layernorm(c))
// gives each head's non-rotary key (qk_nope_head_dim) and value (v_head_dim). RoPE applies to the
// last qk_rope_head_dim features of q and to k_pe only, after DeepSeek's interleave permutation
// (pairs (x0, x1), (x2, x3), ... become halves [x0, x2, ...], [x1, x3, ...]); the softmax scale is
// q_head_dim^-½, times yarn's mscale(factor, mscale_all_dim)².
//
// The KV cache holds c (after kv_a_layernorm) and the rotated k_pe per token — kv_lora_rank +
// qk_rope_head_dim values instead of heads × (q_head_dim + v_head_dim) — and kv_b_proj is applied
// to the cached latents at each step.

#include "ranktune/model/config.h"
#include "ranktune/model/layers.h"
#include "ranktune/peft/linear.h"

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace ranktune::model {

class MlaAttentionImpl : public torch::nn::Module {
 public:
  MlaAttentionImpl(const ModelConfig& config, torch::Dtype dtype);
  // residual + o_proj(attention(x)); x [batch, seq, hidden] is the normed input. context.cos/sin
  // are the rotary tables over qk_rope_head_dim.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, const AttentionContext& context,
                        int64_t layer_index);

  peft::Linear q_proj{nullptr};    // without q_lora_rank
  peft::Linear q_a_proj{nullptr};  // with q_lora_rank
  RMSNorm q_a_layernorm{nullptr};
  peft::Linear q_b_proj{nullptr};
  peft::Linear kv_a_proj_with_mqa{nullptr};
  RMSNorm kv_a_layernorm{nullptr};
  peft::Linear kv_b_proj{nullptr};
  peft::Linear o_proj{nullptr};

 private:
  MlaConfig mla_;
  int64_t heads_;
  double query_scale_;  // yarn's mscale², folded into q (the attention divides by sqrt(q_head_dim))
};
TORCH_MODULE(MlaAttention);

// The cache an MLA model needs: per layer, the latent [batch, 1, capacity, kv_lora_rank] as keys
// and the rotary key [batch, 1, capacity, qk_rope_head_dim] as values.
KVCache make_latent_cache(const ModelConfig& config, int64_t batch, int64_t capacity, torch::Dtype dtype);

}  // namespace ranktune::model
