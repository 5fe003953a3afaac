#pragma once
// Building blocks shared by the decoder families: RMSNorm, rotary position embeddings (with
// linear / dynamic-NTK / llama3 scaling), masks, scaled dot-product attention with grouped
// key/value heads and activations — each as transformers computes it.

#include "ranktune/model/config.h"
#include "ranktune/model/kv_cache.h"
#include "ranktune/peft/modules_to_save.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <optional>
#include <string>

namespace ranktune::model {

// y = w ⊙ x / sqrt(mean(x²) + eps), computed in fp32 and cast back (LlamaRMSNorm).
class RMSNormImpl : public torch::nn::Cloneable<RMSNormImpl>, public peft::SubstitutableParameters {
 public:
  RMSNormImpl(int64_t size, double eps, torch::Dtype dtype = torch::kFloat32);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  // modules_to_save can point `weight` at a trained copy.
  std::vector<std::pair<std::string, torch::Tensor*>> parameter_members() override { return {{"weight", &weight}}; }
  torch::Tensor weight;

 private:
  int64_t size_;
  double eps_;
  torch::Dtype dtype_;
};
TORCH_MODULE(RMSNorm);

// cos/sin tables for rotary embeddings in the rotate-half convention (Llama, Mistral, Qwen2;
// DeepSeek's MLA over its qk_rope_head_dim, with yarn scaling).
class RotaryEmbedding {
 public:
  // Rotates `dim` features per head (0: config.head_dim).
  explicit RotaryEmbedding(const ModelConfig& config, int64_t dim = 0);
  // cos and sin, [batch, seq, head_dim] in `dtype`, for integer positions [batch, seq].
  std::pair<torch::Tensor, torch::Tensor> cos_sin(const torch::Tensor& position_ids, torch::Dtype dtype) const;
  const torch::Tensor& inv_freq() const { return inv_freq_; }

 private:
  torch::Tensor inv_freq_for(int64_t seq_len) const;
  ModelConfig config_;
  int64_t dim_;
  torch::Tensor inv_freq_;  // fp32 [dim / 2], after static (linear, llama3, yarn) scaling
  double cos_sin_scale_ = 1.0;  // yarn's mscale ratio
};

// yarn's magnitude correction 0.1·mscale·ln(factor) + 1 (1 for factor <= 1), DeepSeek's
// yarn_get_mscale.
double yarn_mscale(double factor, double mscale);

// x ⊙ cos + rotate_half(x) ⊙ sin for x [batch, seq, heads, head_dim], cos/sin [batch, seq, head_dim].
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// Positions of the `seq` newest tokens: from the padding mask when given ([batch, past + seq],
// 1 = token; cumsum - 1 as transformers' generate does, so left padding is skipped), else
// past .. past + seq - 1. A packed mask (example numbers 1, 1, 2, 2, ...; no cache) restarts the
// positions at 0 for each example, as TRL's packing with position ids does.
torch::Tensor position_ids(const torch::Tensor& attention_mask, int64_t batch, int64_t seq, int64_t past);

// Additive attention mask [batch, 1, seq, past + seq]: 0 where query i may attend key j (causal,
// not padding, within the sliding window), the dtype's lowest value elsewhere (as transformers,
// so a fully masked row stays finite).
torch::Tensor attention_bias(const torch::Tensor& attention_mask, int64_t batch, int64_t seq, int64_t past,
                             torch::Dtype dtype, std::optional<int64_t> sliding_window = std::nullopt);

// softmax(q kᵀ / sqrt(d) + bias) v with grouped key/value heads and no repeated copies of k or v.
// q [batch, heads, seq, d], k [batch, kv_heads, keys, d], v [batch, kv_heads, keys, dv], bias
// [batch, 1, seq, keys]. The softmax runs in fp32. Returns [batch, heads, seq, dv].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias);

// What one attention call needs beyond q, k, v, shared by all layers of a forward pass.
struct AttentionContext {
  torch::Tensor cos, sin;           // RoPE tables [B, T, D]; undefined without RoPE (GPT-2)
  torch::Tensor attention_mask;     // [B, cached + T], 1 for tokens (optional)
  torch::Tensor bias;               // additive mask [B, 1, T, cached + T], built only with a cache and
                                    // only where it masks something (not for one query without padding)
  // With a cache: cos and sin [B, T, 1, D] for rotating every head at once, sin with its first half
  // negated, so rotate_half(x) ⊙ sin is a swap of x's halves times it (no negation or concatenation).
  torch::Tensor head_cos, head_sin_signed;
  std::optional<int64_t> sliding_window;
  KVCache* cache = nullptr;
};

// The context of a rotary decoder's forward pass over `seq` new tokens after `past` cached ones:
// RoPE tables for their positions, the mask, and with a cache the additive bias.
AttentionContext rotary_attention_context(const RotaryEmbedding& rotary, const torch::Tensor& attention_mask,
                                          int64_t batch, int64_t seq, KVCache* cache, torch::Dtype dtype,
                                          std::optional<int64_t> sliding_window = std::nullopt);

// Causal attention of one layer: q [B, T, H, D], k and v [B, T, Hkv, D] straight from the
// projections (RoPE is applied here). Without a cache (training, scoring) it is
// blocked_causal_attention; with one, the new keys/values are appended and attention() runs over
// everything cached. Returns [B, T, H·D].
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionContext& context,
                     int64_t layer_index);

// silu, gelu (erf), gelu_new / gelu_pytorch_tanh (tanh approximation).
torch::Tensor activation(const std::string& name, const torch::Tensor& x);

}  // namespace ranktune::model
