#pragma once
// Causal self-attention for training, computed a block of queries at a time, FlashAttention-style
// (Dao et al. 2022) in plain ATen: blocks above the diagonal are skipped, and neither the
// [T, T] scores nor the probabilities are kept for backward — each block's are recomputed from
// q, k, v and the row log-sum-exp. RoPE is applied inside, so the tensors kept are the
// projections' own outputs (which a DoRA projection keeps too: no extra copy).

#include <torch/types.h>

#include <optional>

namespace ranktune::model {

// q [B, T, H, D] and k [B, T, Hkv, D] before RoPE (cos/sin [B, T, D]; undefined: no rotation, as
// GPT-2), v [B, T, Hkv, Dv] (Dv may differ from D, as in DeepSeek's MLA); Hkv divides H
// (grouped-query attention, no copies of k or v per head). key_padding_mask [B, T] with 1 for
// tokens and 0 for padding (optional), or, for packed sequences, the 1-based number of the example
// each token belongs to (then a query attends only to keys of its own example); sliding_window as
// Mistral's. The softmax runs in fp32; disallowed pairs get the dtype's lowest score as in
// transformers.
// Returns [B, T, H, Dv], contiguous.
torch::Tensor blocked_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                       const torch::Tensor& cos, const torch::Tensor& sin,
                                       const torch::Tensor& key_padding_mask = {},
                                       std::optional<int64_t> sliding_window = std::nullopt, int64_t block = 64);

}  // namespace ranktune::model
