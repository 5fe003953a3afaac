#include "ranktune/model/moe.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

namespace ranktune::model {

// ---- routing -------------------------------------------------------------------------------------

namespace {

// DeepSeek's group-limited choice: keep the topk_group best groups (a group scores its best
// expert, or with noaux_tc the sum of its best two), zero the scores elsewhere (DeepSeek masks with
// 0.0, not -inf: every score is positive), then the top-k.
torch::Tensor group_limited_topk(const torch::Tensor& scores, const MoeConfig& m) {
  const int64_t n = scores.size(0), per_group = m.num_experts / m.n_group;
  const torch::Tensor grouped = scores.view({n, m.n_group, per_group});
  const torch::Tensor group_scores = m.topk_method == MoeConfig::TopK::noaux_tc
                                         ? std::get<0>(grouped.topk(2, -1)).sum(-1)
                                         : std::get<0>(grouped.max(-1));
  const torch::Tensor groups = std::get<1>(group_scores.topk(m.topk_group, -1));
  const torch::Tensor keep = at::zeros_like(group_scores, at::TensorOptions().dtype(torch::kBool))
                                 .scatter_(1, groups, true)
                                 .unsqueeze(-1)
                                 .expand({n, m.n_group, per_group})
                                 .reshape({n, m.num_experts});
  return std::get<1>(scores.masked_fill(keep.logical_not(), 0.0).topk(m.num_experts_per_tok, -1));
}

}  // namespace

Routing route(const torch::Tensor& router_logits, const MoeConfig& m, const torch::Tensor& correction_bias) {
  // fp32 as transformers and DeepSeek (float64 stays float64, for gradient checks).
  const auto dtype = at::promote_types(router_logits.scalar_type(), torch::kFloat32);
  const torch::Tensor scores = m.scoring == MoeConfig::Scoring::softmax ? router_logits.softmax(-1, dtype)
                                                                        : router_logits.to(dtype).sigmoid();
  Routing r;
  switch (m.topk_method) {
    case MoeConfig::TopK::greedy:
      std::tie(r.weights, r.experts) = scores.topk(m.num_experts_per_tok, -1);
      break;
    case MoeConfig::TopK::group_limited_greedy:
      r.experts = group_limited_topk(scores, m);
      r.weights = scores.gather(1, r.experts);
      break;
    case MoeConfig::TopK::noaux_tc:
      // Chosen on the biased scores, weighted by the unbiased ones.
      r.experts = group_limited_topk(scores + correction_bias.to(dtype).unsqueeze(0), m);
      r.weights = scores.gather(1, r.experts);
      break;
  }
  if (m.norm_topk_prob) r.weights = r.weights / (r.weights.sum(-1, /*keepdim=*/true) + 1e-20);
  if (m.routed_scaling_factor != 1.0) r.weights = r.weights * m.routed_scaling_factor;
  return r;
}

torch::Tensor load_balancing_loss(const std::vector<torch::Tensor>& router_logits, int64_t num_experts, int64_t top_k,
                                  const torch::Tensor& attention_mask) {
  RANKTUNE_CHECK(!router_logits.empty(), "load_balancing_loss needs the router logits of at least one layer");
  const torch::Tensor probs = at::cat(router_logits, 0).softmax(-1, torch::kFloat32);  // [L·N, E]
  const torch::Tensor chosen = std::get<1>(probs.topk(top_k, -1));
  const torch::Tensor one_hot = at::one_hot(chosen, num_experts).to(torch::kFloat32);  // [L·N, k, E]
  torch::Tensor tokens_per_expert, probability_per_expert;
  if (!attention_mask.defined()) {
    tokens_per_expert = one_hot.mean(0);       // [k, E]
    probability_per_expert = probs.mean(0);    // [E]
  } else {
    const int64_t layers = probs.size(0) / attention_mask.numel();
    const torch::Tensor token_mask =
        attention_mask.to(torch::kFloat32).reshape({1, -1}).expand({layers, attention_mask.numel()}).reshape({-1, 1});
    tokens_per_expert = (one_hot * token_mask.unsqueeze(-1)).sum(0) / token_mask.sum();
    probability_per_expert = (probs * token_mask).sum(0) / token_mask.sum();
  }
  return (tokens_per_expert * probability_per_expert.unsqueeze(0)).sum() * num_experts;
}

// ---- DeepSeek's gate -----------------------------------------------------------------------------

DeepseekGateImpl::DeepseekGateImpl(const ModelConfig& c, torch::Dtype dtype) {
  const auto options = at::TensorOptions().dtype(dtype);
  weight = register_parameter("weight", at::empty({c.moe.num_experts, c.hidden_size}, options), /*requires_grad=*/false);
  if (c.moe.topk_method == MoeConfig::TopK::noaux_tc) {
    e_score_correction_bias =
        register_parameter("e_score_correction_bias", at::zeros({c.moe.num_experts}, options), /*requires_grad=*/false);
  }
}

torch::Tensor DeepseekGateImpl::forward(const torch::Tensor& x) {
  const auto dtype = at::promote_types(x.scalar_type(), torch::kFloat32);
  return at::linear(x.to(dtype), weight.to(dtype));
}

// ---- the block -----------------------------------------------------------------------------------

SparseMoeBlockImpl::SparseMoeBlockImpl(const ModelConfig& c, torch::Dtype dtype) : moe_(c.moe) {
  if (c.is_deepseek()) {
    deepseek_gate = register_module("gate", DeepseekGate(c, dtype));
  } else {
    gate = register_module("gate", peft::Linear(peft::LinearOptions(c.hidden_size, moe_.num_experts).bias(false).dtype(dtype)));
  }
  const GatedMlpNames names = c.model_type == "mixtral" ? GatedMlpNames{"w1", "w3", "w2"} : GatedMlpNames{};
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < moe_.num_experts; ++e) {
    LlamaMlp expert(c, moe_.expert_intermediate_size, dtype, names);
    expert_layers_.push_back(expert.get());
    experts->push_back(expert);
  }
  if (moe_.shared_expert_intermediate_size > 0) {
    const char* name = c.is_deepseek() ? "shared_experts" : "shared_expert";
    shared_expert = register_module(name, LlamaMlp(c, moe_.shared_expert_intermediate_size, dtype));
  }
  if (moe_.shared_expert_gate) {
    shared_expert_gate = register_module(
        "shared_expert_gate", peft::Linear(peft::LinearOptions(c.hidden_size, 1).bias(false).dtype(dtype)));
  }
}

torch::Tensor SparseMoeBlockImpl::router_logits(const torch::Tensor& x) {
  return gate ? gate->forward(x) : deepseek_gate->forward(x);
}

torch::Tensor SparseMoeBlockImpl::routed_experts(const torch::Tensor& x, const Routing& routing) {
  const int64_t top_k = routing.experts.size(1);
  // (token, choice) pairs sorted by expert: each expert's tokens are one contiguous slice.
  const torch::Tensor flat_experts = routing.experts.reshape({-1});
  const torch::Tensor order = flat_experts.argsort();
  const torch::Tensor tokens = order.div(top_k, "floor");
  const torch::Tensor counts = at::bincount(flat_experts, {}, moe_.num_experts);
  const torch::Tensor routed = x.index_select(0, tokens);
  std::vector<torch::Tensor> outputs;
  int64_t offset = 0;
  const auto* count = counts.data_ptr<int64_t>();
  for (int64_t e = 0; e < moe_.num_experts; ++e) {
    if (count[e] == 0) continue;
    outputs.push_back(expert_layers_[static_cast<size_t>(e)]->forward(routed.narrow(0, offset, count[e])));
    offset += count[e];
  }
  if (outputs.empty()) return at::zeros_like(x);
  // Summed in the experts' dtype: x's, or bf16 when the experts ran under autocast.
  const torch::Tensor expert_out = at::cat(outputs, 0);
  const torch::Tensor weights = routing.weights.reshape({-1}).index_select(0, order).to(expert_out.scalar_type()).unsqueeze(1);
  return at::zeros_like(x, expert_out.options()).index_add(0, tokens, expert_out * weights);
}

torch::Tensor SparseMoeBlockImpl::forward(const torch::Tensor& x, std::vector<torch::Tensor>* router_logits_out) {
  const torch::Tensor flat = x.reshape({-1, x.size(-1)});
  const torch::Tensor logits = router_logits(flat);
  if (router_logits_out != nullptr) router_logits_out->push_back(logits);
  const torch::Tensor bias = deepseek_gate ? deepseek_gate->e_score_correction_bias : torch::Tensor();
  torch::Tensor y = routed_experts(flat, route(logits, moe_, bias));
  if (shared_expert) {
    torch::Tensor shared = shared_expert->forward(flat);
    if (shared_expert_gate) shared = at::sigmoid(shared_expert_gate->forward(flat)) * shared;
    y = y + shared;
  }
  return y.view(x.sizes());
}

}  // namespace ranktune::model
