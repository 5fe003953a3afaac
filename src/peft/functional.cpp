#include "ranktune/peft/functional.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>

namespace ranktune::peft::functional {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// [..., n] -> [N, n] without copying when possible.
Tensor rows(const Tensor& t) { return t.reshape({-1, t.size(-1)}); }

// ---- LoRA ----------------------------------------------------------------------------------------
// y = result + s (x Aᵀ) Bᵀ
//   dresult = g;  dB = s gᵀ h;  dh = s g B;  dA = dhᵀ x;  dx = dh A        (h = x Aᵀ)
struct LoraUpdate : public torch::autograd::Function<LoraUpdate> {
  static Tensor forward(AutogradContext* ctx, const Tensor& result, const Tensor& x, const Tensor& A,
                        const Tensor& B, double scaling) {
    const Tensor x2 = rows(x);
    const Tensor h = x2.mm(A.t());
    const Tensor r2 = rows(result);
    Tensor out;
    if (r2.scalar_type() == h.scalar_type()) {
      out = at::addmm(r2, h, B.t(), /*beta=*/1, /*alpha=*/scaling);
    } else {
      out = r2 + h.mm(B.t()).mul_(scaling).to(r2.scalar_type());
    }
    ctx->save_for_backward({x, h, A, B});
    ctx->saved_data["scaling"] = scaling;
    return out.view(result.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& h = saved[1];
    const Tensor& A = saved[2];
    const Tensor& B = saved[3];
    const double s = ctx->saved_data["scaling"].toDouble();
    const Tensor& g = grads[0];
    Tensor d_result, d_x, d_A, d_B;
    if (ctx->needs_input_grad(0)) d_result = g;
    const bool need_x = ctx->needs_input_grad(1), need_A = ctx->needs_input_grad(2);
    if (need_x || need_A || ctx->needs_input_grad(3)) {
      const Tensor g2 = rows(g).to(h.scalar_type());
      if (ctx->needs_input_grad(3)) d_B = g2.t().mm(h).mul_(s);
      if (need_x || need_A) {
        const Tensor dh = g2.mm(B).mul_(s);
        if (need_A) d_A = dh.t().mm(rows(x));
        if (need_x) d_x = dh.mm(A).view(x.sizes());
      }
    }
    return {d_result, d_x, d_A, d_B, Tensor()};
  }
};

// ---- DoRA ----------------------------------------------------------------------------------------
// y = rest + c ⊙ z,  z = base + s (x Aᵀ) Bᵀ,  c = m / n  (n detached)
//   drest = g (summed to rest's shape);  dbase = g c;  dm = Σ_t g z / n;
//   dB = s (g c)ᵀ h;  dh = s (g c) B;  dA = dhᵀ x;  dx = dh A
struct DoraUpdate : public torch::autograd::Function<DoraUpdate> {
  static Tensor forward(AutogradContext* ctx, const Tensor& rest, const Tensor& base, const Tensor& x,
                        const Tensor& A, const Tensor& B, const Tensor& magnitude, const Tensor& weight_norm,
                        double scaling) {
    const Tensor x2 = rows(x);
    const Tensor h = x2.mm(A.t());
    const Tensor c = magnitude / weight_norm;
    Tensor z = at::addmm(rows(base), h, B.t(), /*beta=*/1, /*alpha=*/scaling);
    // z can be recovered from y exactly when y = c z (no rest) and c has no zero.
    const bool has_rest = rest.numel() > 0;
    const bool recover_z = !has_rest && !magnitude.eq(0).any().item<bool>();
    Tensor y;
    if (recover_z) {
      y = z.mul_(c);  // in place: z's buffer becomes the output
      ctx->save_for_backward({x, h, A, B, c, magnitude, y});
    } else {
      y = z * c;
      if (has_rest) y.add_(rest.dim() == 1 ? rest : rows(rest));
      ctx->save_for_backward({x, h, A, B, c, weight_norm, z});
    }
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["rest_dim"] = static_cast<int64_t>(has_rest ? rest.dim() : -1);
    auto sizes = base.sizes().vec();
    return y.view(sizes);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& h = saved[1];
    const Tensor& A = saved[2];
    const Tensor& B = saved[3];
    const Tensor& c = saved[4];
    const double s = ctx->saved_data["scaling"].toDouble();
    const int64_t rest_dim = ctx->saved_data["rest_dim"].toInt();
    const Tensor g2 = rows(grads[0]);

    Tensor d_rest, d_base, d_x, d_A, d_B, d_m;
    if (ctx->needs_input_grad(0) && rest_dim >= 0) {
      d_rest = rest_dim == 1 ? g2.sum(0) : grads[0];
    }
    if (ctx->needs_input_grad(5)) {
      // Saved as (z, n), or as (y, m) when recover_z: Σ_t g z / n = Σ_t g y / (c n) = Σ_t g y / m.
      d_m = (g2 * saved[6]).sum(0).div_(saved[5]);
    }
    const bool need_base = ctx->needs_input_grad(1), need_x = ctx->needs_input_grad(2),
               need_A = ctx->needs_input_grad(3), need_B = ctx->needs_input_grad(4);
    if (need_base || need_x || need_A || need_B) {
      const Tensor gc = g2 * c;
      if (need_base) d_base = gc.view(grads[0].sizes());
      if (need_B) d_B = gc.t().mm(h).mul_(s);
      if (need_x || need_A) {
        const Tensor dh = gc.mm(B).mul_(s);
        if (need_A) d_A = dh.t().mm(rows(x));
        if (need_x) d_x = dh.mm(A).view(x.sizes());
      }
    }
    return {d_rest, d_base, d_x, d_A, d_B, d_m, Tensor(), Tensor()};
  }
};

// Under CPU autocast the kernels run in the autocast dtype with autocast itself switched off
// inside: their matmuls then agree on one dtype in forward and backward (the casts of A, B and m
// are differentiable, so fp32 parameters still get fp32 gradients).
std::optional<at::ScalarType> autocast_dtype() {
  if (!at::autocast::is_cpu_enabled()) return std::nullopt;
  return at::autocast::get_autocast_cpu_dtype();
}

Tensor cast(const Tensor& t, at::ScalarType dtype) { return t.defined() && t.scalar_type() != dtype ? t.to(dtype) : t; }

}  // namespace

Tensor lora_update(const Tensor& result, const Tensor& x, const Tensor& A, const Tensor& B, double scaling) {
  if (const auto dtype = autocast_dtype()) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
    return LoraUpdate::apply(result, cast(x, *dtype), cast(A, *dtype), cast(B, *dtype), scaling);
  }
  return LoraUpdate::apply(result, x, A, B, scaling);
}

Tensor dora_update(const Tensor& rest, const Tensor& base, const Tensor& x, const Tensor& A, const Tensor& B,
                   const Tensor& magnitude, const Tensor& weight_norm, double scaling) {
  // LibTorch 1.13's custom functions reject undefined tensor inputs: "no rest" travels as an
  // empty tensor.
  const Tensor rest_or_empty = rest.defined() ? rest : at::empty({0}, base.options());
  if (const auto dtype = autocast_dtype()) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
    return DoraUpdate::apply(cast(rest_or_empty, *dtype), cast(base, *dtype), cast(x, *dtype), cast(A, *dtype),
                             cast(B, *dtype), cast(magnitude, *dtype), cast(weight_norm.detach(), *dtype), scaling);
  }
  return DoraUpdate::apply(rest_or_empty, base, x, A, B, magnitude, weight_norm.detach(), scaling);
}

Tensor dora_weight_norm(const Tensor& weight, const Tensor& weight_row_sq_norm, const Tensor& A,
                        const Tensor& B, double scaling, double eps) {
  at::NoGradGuard no_grad;
  const Tensor a = A.detach().to(weight.scalar_type());
  const Tensor b = B.detach().to(weight.scalar_type());
  const Tensor wa = weight.mm(a.t());            // [out, r]
  const Tensor bg = b.mm(a.mm(a.t()));           // [out, r] = B (A Aᵀ)
  Tensor sq = weight_row_sq_norm.to(weight.scalar_type()).clone();
  sq.add_((b * wa).sum(1), 2.0 * scaling).add_((b * bg).sum(1), scaling * scaling);
  return sq.clamp_min_(0).sqrt_().clamp_min_(eps).to(A.scalar_type());
}

}  // namespace ranktune::peft::functional
