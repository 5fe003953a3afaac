#pragma once
// Mixture-of-experts decoders: MixtralForCausalLM, Qwen2MoeForCausalLM, DeepseekV2ForCausalLM and
// DeepseekV3ForCausalLM. Pre-norm layers as Llama's, with Llama's attention (Mixtral, Qwen2-MoE)
// or DeepSeek's multi-head latent attention, and a sparse MoE block (`block_sparse_moe` in
// Mixtral, `mlp` otherwise) or a dense MLP where the config says the layer is dense.

#include "ranktune/model/causal_lm.h"
#include "ranktune/model/layers.h"
#include "ranktune/model/llama.h"
#include "ranktune/model/mla_attention.h"
#include "ranktune/model/moe.h"

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <vector>

namespace ranktune::model {

class MoeDecoderLayerImpl : public torch::nn::Module {
 public:
  MoeDecoderLayerImpl(const ModelConfig& config, int64_t layer_index, torch::Dtype dtype);
  // The layer's output; a sparse layer appends its router logits to `router_logits` when given.
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index,
                        std::vector<torch::Tensor>* router_logits);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};  // Mixtral, Qwen2-MoE
  MlaAttention latent_attn{nullptr};  // DeepSeek (registered as `self_attn`)
  LlamaMlp dense_mlp{nullptr};        // a dense layer (registered as `mlp`)
  SparseMoeBlock moe{nullptr};        // a sparse layer (`block_sparse_moe` or `mlp`)
};
TORCH_MODULE(MoeDecoderLayer);

class MoeModelImpl : public torch::nn::Module {
 public:
  MoeModelImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(MoeModel);

class MoeForCausalLMImpl : public CausalLMImpl {
 public:
  MoeForCausalLMImpl(const ModelConfig& config, torch::Dtype dtype);
  // As CausalLMImpl::forward; with config.moe.output_router_logits (Mixtral, Qwen2-MoE) the output
  // carries the load-balancing aux_loss, added to the loss times router_aux_loss_coef when labels
  // are given, as transformers does.
  CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         const torch::Tensor& labels = {}, KVCache* cache = nullptr, bool need_logits = true) override;
  bool ignorable_checkpoint_key(const std::string& name) const override;
  peft::LinearImpl& lm_head_layer() override { return *lm_head; }
  // MLA models cache the compressed latent and the rotary key (see mla_attention.h).
  KVCache make_cache(int64_t batch, int64_t capacity) const override;

  MoeModel model{nullptr};
  peft::Linear lm_head{nullptr};

 private:
  RotaryEmbedding rotary_;
};
TORCH_MODULE(MoeForCausalLM);

}  // namespace ranktune::model
