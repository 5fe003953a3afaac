#pragma once
// GPT2LMHeadModel: learned position embeddings, LayerNorm, a fused q/k/v projection (`c_attn`)
// and GELU MLP. Hugging Face stores GPT-2's projections as Conv1D ([in, out] weights): they are
// peft::Linear layers with fan_in_fan_out, so PEFT adapters for GPT-2 load as they are.

#include "ranktune/model/causal_lm.h"
#include "ranktune/model/layers.h"
#include "ranktune/peft/linear.h"

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>

namespace ranktune::model {

class GPT2AttentionImpl : public torch::nn::Module {
 public:
  GPT2AttentionImpl(const ModelConfig& config, torch::Dtype dtype);
  // residual + c_proj(attention(x)).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, const AttentionContext& context,
                        int64_t layer_index);
  peft::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(GPT2Attention);

class GPT2MlpImpl : public torch::nn::Module {
 public:
  GPT2MlpImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);  // residual + c_proj(act(c_fc(x)))
  peft::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(GPT2Mlp);

class GPT2BlockImpl : public torch::nn::Module {
 public:
  GPT2BlockImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& context, int64_t layer_index);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  GPT2Attention attn{nullptr};
  GPT2Mlp mlp{nullptr};
};
TORCH_MODULE(GPT2Block);

class GPT2ModelImpl : public torch::nn::Module {
 public:
  GPT2ModelImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(GPT2Model);

class GPT2LMHeadModelImpl : public CausalLMImpl {
 public:
  GPT2LMHeadModelImpl(const ModelConfig& config, torch::Dtype dtype);
  CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         const torch::Tensor& labels = {}, KVCache* cache = nullptr, bool need_logits = true) override;
  bool ignorable_checkpoint_key(const std::string& name) const override;
  peft::LinearImpl& lm_head_layer() override { return *lm_head; }

  GPT2Model transformer{nullptr};
  peft::Linear lm_head{nullptr};  // a torch.nn.Linear in transformers (not Conv1D); tied: transformer.wte.weight
};
TORCH_MODULE(GPT2LMHeadModel);

}  // namespace ranktune::model
