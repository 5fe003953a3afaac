#include "token_logprobs.h"

#include "ranktune/core/error.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/linear.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace ranktune::train {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// logp = z[target] - logsumexp(z) with z = h Wᵀ / T. With upstream gradient g per row,
// d z = g · (onehot - softmax(z)), so d h = (d z / T) W and d W = (d z / T)ᵀ h.
struct ChunkedTokenLogProbs : public torch::autograd::Function<ChunkedTokenLogProbs> {
  static variable_list forward(AutogradContext* ctx, const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                               double temperature, int64_t chunk, bool need_hidden, bool need_weight) {
    const int64_t n = hidden.size(0);
    Tensor logps = at::empty({n}, hidden.options().dtype(at::kFloat));
    Tensor entropy = at::empty({n}, hidden.options().dtype(at::kFloat));
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      const Tensor log_probs = at::_log_softmax(hidden.narrow(0, start, len).mm(weight.t()).to(at::kFloat).div_(temperature), 1, false);
      logps.narrow(0, start, len).copy_(log_probs.gather(1, targets.narrow(0, start, len).unsqueeze(1)).squeeze(1));
      entropy.narrow(0, start, len).copy_(-(log_probs.exp() * log_probs).sum(1));
    }
    ctx->save_for_backward({hidden, weight, targets});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["need_hidden"] = need_hidden;
    ctx->saved_data["need_weight"] = need_weight;
    ctx->mark_non_differentiable({entropy});
    return {logps, entropy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &hidden = saved[0], &weight = saved[1], &targets = saved[2];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const bool need_hidden = ctx->saved_data["need_hidden"].toBool();
    const bool need_weight = ctx->saved_data["need_weight"].toBool();
    const Tensor g = grads[0].defined() ? grads[0].to(at::kFloat) : at::zeros({hidden.size(0)}, hidden.options().dtype(at::kFloat));
    Tensor d_hidden = need_hidden ? at::empty_like(hidden) : Tensor();
    Tensor d_weight = need_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : Tensor();
    for (int64_t start = 0; start < hidden.size(0); start += chunk) {
      const int64_t len = std::min(chunk, hidden.size(0) - start);
      const Tensor h = hidden.narrow(0, start, len);
      const Tensor g_rows = g.narrow(0, start, len).unsqueeze(1);
      // d z = g (onehot - softmax), scaled by 1/T for the division inside z.
      Tensor d_logits = at::_softmax(h.mm(weight.t()).to(at::kFloat).div_(temperature), 1, false).neg_();
      d_logits.scatter_add_(1, targets.narrow(0, start, len).unsqueeze(1), at::ones({len, 1}, d_logits.options()));
      d_logits.mul_(g_rows).div_(temperature);
      if (need_hidden) d_hidden.narrow(0, start, len).copy_(d_logits.to(hidden.scalar_type()).mm(weight));
      if (need_weight) d_weight.addmm_(d_logits.t(), h.to(at::kFloat));
    }
    if (d_weight.defined()) d_weight = d_weight.to(weight.scalar_type());
    return {d_hidden, d_weight, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

TokenLogProbs chunked_token_log_probs(const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                      double temperature, int64_t chunk) {
  RANKTUNE_CHECK(temperature > 0, "log-probs need a positive temperature, got ", temperature);
  const bool grad = at::GradMode::is_enabled();
  const auto out = ChunkedTokenLogProbs::apply(hidden, weight, targets, temperature, std::max<int64_t>(chunk, 1),
                                               grad && hidden.requires_grad(), grad && weight.requires_grad());
  return {out[0], out[1]};
}

TokenLogProbs completion_log_probs(model::CausalLMImpl& model, const Tensor& input_ids, const Tensor& attention_mask,
                                   int64_t completion_length, double temperature, int64_t chunk) {
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  RANKTUNE_CHECK(completion_length > 0 && completion_length < seq, "a completion of ", completion_length,
                 " tokens needs a prompt before it in rows of ", seq, " tokens");
  const Tensor hidden = model.forward(input_ids, attention_mask, {}, nullptr, /*need_logits=*/false).hidden_states;
  // Position t predicts token t + 1: the completion's tokens are predicted from the positions
  // before each of them.
  const Tensor h = hidden.narrow(1, seq - completion_length - 1, completion_length).reshape({-1, hidden.size(-1)});
  const Tensor targets = input_ids.narrow(1, seq - completion_length, completion_length).reshape({-1});
  peft::LinearImpl& head = model.lm_head_layer();
  TokenLogProbs out;
  if (!head.bias.defined() && !head.has_active_update()) {
    out = chunked_token_log_probs(h, head.weight_out_in(), targets, temperature, chunk);
  } else {
    std::vector<Tensor> logps, entropy;
    for (int64_t start = 0; start < h.size(0); start += chunk) {
      const int64_t len = std::min(chunk, h.size(0) - start);
      const Tensor log_probs = at::log_softmax(head.forward(h.narrow(0, start, len)).to(at::kFloat) / temperature, 1);
      logps.push_back(log_probs.gather(1, targets.narrow(0, start, len).unsqueeze(1)).squeeze(1));
      at::NoGradGuard no_grad;
      entropy.push_back(-(log_probs.exp() * log_probs).sum(1));
    }
    out = {at::cat(logps), at::cat(entropy)};
  }
  out.logps = out.logps.view({batch, completion_length});
  out.entropy = out.entropy.view({batch, completion_length});
  return out;
}

}  // namespace ranktune::train
