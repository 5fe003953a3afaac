#pragma once
// The mixture-of-experts feed-forward of Mixtral, Qwen2-MoE and DeepSeek-V2/V3: a router scores
// the experts per token, each token runs through its top-k experts only, and their outputs are
// summed with the routing weights; shared experts (Qwen2-MoE's gated one, DeepSeek's) see every
// token. Every expert is a gated MLP of peft::Linear layers under its Hugging Face name
// (`experts.N.w1` / `experts.N.gate_proj`, ...), so adapters target them like any projection.
//
// Compute is grouped by expert: the (token, expert) pairs are sorted by expert, each expert runs
// one GEMM per projection over exactly the tokens routed to it (its adapters too), and the
// weighted outputs are added back per token.

#include "ranktune/model/config.h"
#include "ranktune/model/llama.h"
#include "ranktune/peft/linear.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

namespace ranktune::model {

// The router's choice for N tokens: expert ids [N, k] (int64) and their weights [N, k] (fp32, or
// float64 for a float64 model).
struct Routing {
  torch::Tensor experts;
  torch::Tensor weights;
};

// Scores the router logits [N, num_experts] (softmax in fp32, or sigmoid), picks the top-k as
// `moe.topk_method` says (with `correction_bias` [num_experts] for noaux_tc), then normalises and
// scales the weights as the config says (MoeConfig).
Routing route(const torch::Tensor& router_logits, const MoeConfig& moe, const torch::Tensor& correction_bias = {});

// transformers' load_balancing_loss_func (Switch Transformer, eqs. 4-6) over the router logits of
// every sparse layer ([tokens, num_experts] each, the same tokens in the same order), with padding
// excluded when attention_mask [batch, seq] is given: E · Σ_k,e f_k,e · P_e, where f is the
// fraction of tokens whose k-th choice is expert e and P the mean router probability of e.
torch::Tensor load_balancing_loss(const std::vector<torch::Tensor>& router_logits, int64_t num_experts, int64_t top_k,
                                  const torch::Tensor& attention_mask = {});

// DeepSeek's router `gate`: a weight [num_experts, hidden] (not a Linear in DeepSeek's code) and,
// for noaux_tc, `e_score_correction_bias` [num_experts]. Frozen.
class DeepseekGateImpl : public torch::nn::Module {
 public:
  DeepseekGateImpl(const ModelConfig& config, torch::Dtype dtype);
  torch::Tensor forward(const torch::Tensor& x);  // logits in fp32 (at least), as DeepSeek computes them
  torch::Tensor weight;
  torch::Tensor e_score_correction_bias;  // undefined unless noaux_tc
};
TORCH_MODULE(DeepseekGate);

class SparseMoeBlockImpl : public torch::nn::Module {
 public:
  SparseMoeBlockImpl(const ModelConfig& config, torch::Dtype dtype);
  // The block's output for x [..., hidden] (no residual). When `router_logits` is given, this
  // layer's logits [tokens, num_experts] are appended to it (for the load-balancing loss).
  torch::Tensor forward(const torch::Tensor& x, std::vector<torch::Tensor>* router_logits = nullptr);
  // The router's logits for x [tokens, hidden].
  torch::Tensor router_logits(const torch::Tensor& x);

  peft::Linear gate{nullptr};              // Mixtral, Qwen2-MoE: a Linear `gate`
  DeepseekGate deepseek_gate{nullptr};     // DeepSeek: its MoEGate, also named `gate`
  torch::nn::ModuleList experts{nullptr};  // LlamaMlp each
  LlamaMlp shared_expert{nullptr};         // `shared_expert` (Qwen2-MoE) or `shared_experts` (DeepSeek)
  peft::Linear shared_expert_gate{nullptr};  // Qwen2-MoE: sigmoid gate of the shared expert

 private:
  // Σ_k weight · expert(x) per token, computed expert by expert over the routed tokens only.
  torch::Tensor routed_experts(const torch::Tensor& x, const Routing& routing);
  MoeConfig moe_;
  std::vector<LlamaMlpImpl*> expert_layers_;
};
TORCH_MODULE(SparseMoeBlock);

}  // namespace ranktune::model
