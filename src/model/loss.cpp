#include "ranktune/model/loss.h"

#include "ranktune/core/autocast.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>

namespace ranktune::model {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// loss = Σ_valid (logsumexp(h Wᵀ) - (h Wᵀ)[label]) / count. With the upstream gradient g (a
// scalar), d logits = g · (softmax - onehot) / count on valid rows, 0 elsewhere.
struct LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
  // need_hidden / need_weight come from the caller: with grad mode off the context has no edges to
  // ask (and inside forward grad mode is always off).
  static Tensor forward(AutogradContext* ctx, const Tensor& hidden, const Tensor& weight, const Tensor& labels, int64_t chunk,
                        bool need_hidden, bool need_weight) {
    const int64_t n = hidden.size(0);
    const Tensor valid = labels.ne(-100);
    const int64_t count = valid.sum().item<int64_t>();
    Tensor d_hidden = need_hidden ? at::empty_like(hidden) : Tensor();
    Tensor d_weight = need_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : Tensor();
    double total = 0;
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      const Tensor h = hidden.narrow(0, start, len);
      const Tensor target = labels.narrow(0, start, len);
      const Tensor keep = valid.narrow(0, start, len);
      // log_softmax is one vectorised kernel (max, sum of exp, subtract); softmax is then its exp.
      Tensor log_probs = at::_log_softmax(h.mm(weight.t()).to(at::kFloat), 1, /*half_to_float=*/false);
      const Tensor safe_target = target.clamp_min(0);
      const Tensor target_log_prob = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1);
      total -= target_log_prob.masked_fill(keep.logical_not(), 0).sum().item<double>();
      if ((need_hidden || need_weight) && count > 0) {
        Tensor d_logits = log_probs.exp_();  // softmax, in the same buffer
        d_logits.scatter_add_(1, safe_target.unsqueeze(1), at::full({len, 1}, -1.0f, d_logits.options()));
        d_logits.mul_(keep.unsqueeze(1).to(at::kFloat)).div_(static_cast<double>(count));
        const Tensor d_logits_cast = d_logits.to(hidden.scalar_type());
        if (need_hidden) d_hidden.narrow(0, start, len).copy_(d_logits_cast.mm(weight));
        if (need_weight) d_weight.addmm_(d_logits.t(), h.to(at::kFloat));
      }
    }
    ctx->save_for_backward({d_hidden, d_weight});
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    const double loss = count > 0 ? total / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
    return at::scalar_tensor(loss, at::TensorOptions().dtype(at::kFloat));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& g = grads[0];
    Tensor d_hidden = saved[0].defined() ? saved[0] * g.to(saved[0].scalar_type()) : Tensor();
    Tensor d_weight;
    if (saved[1].defined()) {
      d_weight = (saved[1] * g).to(static_cast<at::ScalarType>(ctx->saved_data["weight_dtype"].toInt()));
    }
    return {d_hidden, d_weight, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor causal_lm_loss(const Tensor& logits, const Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  const Tensor shifted_logits = logits.narrow(1, 0, logits.size(1) - 1).to(torch::kFloat32).reshape({-1, vocab});
  const Tensor shifted_labels = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  return at::cross_entropy_loss(shifted_logits, shifted_labels, /*weight=*/{}, at::Reduction::Mean, /*ignore_index=*/-100);
}

Tensor chunked_causal_lm_loss(const Tensor& hidden, const Tensor& weight, const Tensor& labels, int64_t chunk) {
  const int64_t hidden_size = hidden.size(-1);
  const Tensor shifted_hidden = hidden.narrow(1, 0, hidden.size(1) - 1).reshape({-1, hidden_size});
  const Tensor shifted_labels = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  const bool grad = at::GradMode::is_enabled();
  const bool need_hidden = grad && hidden.requires_grad(), need_weight = grad && weight.requires_grad();
  // Under autocast the head's GEMMs run in the autocast dtype; log-softmax and the loss stay fp32.
  if (const auto dtype = cpu_autocast_dtype()) {
    const NoCpuAutocast no_autocast;
    return LinearCrossEntropy::apply(cast_floating(shifted_hidden, *dtype), cast_floating(weight, *dtype), shifted_labels,
                                     std::max<int64_t>(chunk, 1), need_hidden, need_weight);
  }
  return LinearCrossEntropy::apply(shifted_hidden, weight, shifted_labels, std::max<int64_t>(chunk, 1), need_hidden,
                                   need_weight);
}

}  // namespace ranktune::model
