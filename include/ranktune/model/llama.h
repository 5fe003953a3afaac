#pragma once
// The Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM): pre-norm decoder
// layers with RMSNorm, rotary attention with grouped key/value heads and a gated SiLU MLP. The
// families differ only in config (biases, sliding window, rope), so one implementation serves.

#include "ranktune/model/causal_lm.h"
#include "ranktune/model/layers.h"
#include "ranktune/peft/linear.h"

#include <memory>
#include <string>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

namespace ranktune::model {

class FusedProjections;

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const ModelConfig& config, torch::Dtype dtype);
  // residual + o_proj(attention(x)); x [batch, seq, hidden] is the normed input.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, const AttentionContext& context,
                        int64_t layer_index);
  peft::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
  std::shared_ptr<const FusedProjections> qkv_;  // one GEMM for the three base products
};
TORCH_MODULE(LlamaAttention);

// Module names of a gated MLP's projections: Llama's, or Mixtral's experts' (w1, w3, w2).
struct GatedMlpNames {
  std::string gate = "gate_proj", up = "up_proj", down = "down_proj";
};

class LlamaMlpImpl : public torch::nn::Module {
 public:
  LlamaMlpImpl(const ModelConfig& config, torch::Dtype dtype);
  // Width `intermediate_size`, under `names` (the MLPs of mixture-of-experts models).
  LlamaMlpImpl(const ModelConfig& config, int64_t intermediate_size, torch::Dtype dtype, const GatedMlpNames& names = {});
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);  // residual + down(act(gate(x)) ⊙ up(x))
  torch::Tensor forward(const torch::Tensor& x);                                 // down(act(gate(x)) ⊙ up(x))
  peft::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  std::string act_;
  std::shared_ptr<const FusedProjections> gate_up_;  // one GEMM for both base products
};
TORCH_MODULE(LlamaMlp);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public CausalLMImpl {
 public:
  LlamaForCausalLMImpl(const ModelConfig& config, torch::Dtype dtype);
  CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         const torch::Tensor& labels = {}, KVCache* cache = nullptr, bool need_logits = true) override;
  bool ignorable_checkpoint_key(const std::string& name) const override;
  peft::LinearImpl& lm_head_layer() override { return *lm_head; }

  LlamaModel model{nullptr};
  peft::Linear lm_head{nullptr};  // with tie_word_embeddings, its weight is model.embed_tokens.weight

 private:
  RotaryEmbedding rotary_;
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace ranktune::model
