#include "ranktune/peft/functional.h"

#include "ranktune/core/autocast.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
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
// y = result + s h Bᵀ, where h = x Aᵀ comes from the caller's graph (lora_a_product, or one GEMM
// for several projections), which takes dh on to A and x.
//   dresult = g;  dB = s gᵀ h;  dh = s g B
struct LoraUpdate : public torch::autograd::Function<LoraUpdate> {
  static Tensor forward(AutogradContext* ctx, const Tensor& result, const Tensor& h, const Tensor& B, double scaling) {
    const Tensor h2 = rows(h);
    const Tensor r2 = rows(result);
    Tensor out;
    if (r2.scalar_type() != h.scalar_type()) {
      out = r2 + h2.mm(B.t()).mul_(scaling).to(r2.scalar_type());
    } else if (h2.size(0) == 1) {
      // One row (decoding): a matrix-vector product, about twice as fast as a one-row GEMM.
      out = at::addmv(r2.view({-1}), B, h2.view({-1}), /*beta=*/1, /*alpha=*/scaling).unsqueeze(0);
    } else {
      out = at::addmm(r2, h2, B.t(), /*beta=*/1, /*alpha=*/scaling);
    }
    ctx->save_for_backward({h, B});
    ctx->saved_data["scaling"] = scaling;
    return out.view(result.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& h = saved[0];
    const Tensor& B = saved[1];
    const double s = ctx->saved_data["scaling"].toDouble();
    const Tensor& g = grads[0];
    Tensor d_result, d_h, d_B;
    if (ctx->needs_input_grad(0)) d_result = g;
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const Tensor g2 = rows(g).to(h.scalar_type());
      if (ctx->needs_input_grad(2)) d_B = g2.t().mm(rows(h)).mul_(s);
      if (ctx->needs_input_grad(1)) d_h = g2.mm(B).mul_(s).view(h.sizes());
    }
    return {d_result, d_h, d_B, Tensor()};
  }
};

// ---- DoRA ----------------------------------------------------------------------------------------
// DoRA's per-column work done in single passes over [N, out] rows (ATen would take two or three
// each): the scaling y = c ⊙ z + rest in forward, and in backward gc = g ⊙ c together with the
// column sums Σ_t g ⊙ z. Threads split the rows; the partial sums are added in a fixed order, so
// results do not depend on timing (a resumed run stays bit-identical).

// z ← c ⊙ z (+ rest), in place. z, rest: contiguous [N, out]; c: [out].
void scale_columns_(Tensor& z, const Tensor& c, const Tensor& rest) {
  const int64_t n = z.size(0), out = z.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, z.scalar_type(), "dora_scale", [&] {
    scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* cp = c.data_ptr<scalar_t>();
    const scalar_t* rp = rest.defined() ? rest.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        scalar_t* row = zp + t * out;
        if (rp != nullptr) {
          const scalar_t* r = rp + t * out;
          for (int64_t i = 0; i < out; ++i) row[i] = row[i] * cp[i] + r[i];
        } else {
          for (int64_t i = 0; i < out; ++i) row[i] *= cp[i];
        }
      }
    });
  });
}

// gc = g ⊙ c and dot = Σ_t g ⊙ (y - rest) per column (rest optional). g, y, rest: contiguous [N, out].
void scale_and_dot_columns(const Tensor& g, const Tensor& c, const Tensor& y, const Tensor& rest, Tensor& gc, Tensor& dot) {
  const int64_t n = g.size(0), out = g.size(1);
  gc = at::empty_like(g);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  const int64_t per_chunk = (n + chunks - 1) / chunks;
  Tensor partial = at::zeros({chunks, out}, g.options().dtype(g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, g.scalar_type(), "dora_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* cp = c.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* rp = rest.defined() ? rest.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = gc.data_ptr<scalar_t>();
    acc_t* pp = partial.data_ptr<acc_t>();
    // One chunk of rows per task (not parallel_for's grain), so the partial sums are the same for
    // a given thread count whatever the scheduling.
    at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
      for (int64_t chunk = first; chunk < last; ++chunk) {
        acc_t* acc = pp + chunk * out;
        for (int64_t t = chunk * per_chunk; t < std::min(n, (chunk + 1) * per_chunk); ++t) {
          const scalar_t* gr = gp + t * out;
          const scalar_t* yr = yp + t * out;
          scalar_t* o = op + t * out;
          if (rp != nullptr) {
            const scalar_t* r = rp + t * out;
            for (int64_t i = 0; i < out; ++i) {
              o[i] = gr[i] * cp[i];
              acc[i] += static_cast<acc_t>(gr[i]) * (static_cast<acc_t>(yr[i]) - static_cast<acc_t>(r[i]));
            }
          } else {
            for (int64_t i = 0; i < out; ++i) {
              o[i] = gr[i] * cp[i];
              acc[i] += static_cast<acc_t>(gr[i]) * static_cast<acc_t>(yr[i]);
            }
          }
        }
      }
    });
  });
  dot = partial.sum(0).to(g.scalar_type());
}

// y = rest + c ⊙ z,  z = base + s (x Aᵀ) Bᵀ,  c = m / n  (n detached)
//   drest = g (summed to rest's shape);  dbase = g c;  dm = Σ_t g z / n;
//   dB = s (g c)ᵀ h;  dh = s (g c) B       (h = x Aᵀ from the caller's graph, as for LoRA)
struct DoraUpdate : public torch::autograd::Function<DoraUpdate> {
  // What backward finds z in: a copy of z, the output y (= c z), or y and rest (y = rest + c z).
  enum Saved : int64_t { kZ = 0, kOutput = 1, kOutputAndRest = 2 };

  static Tensor forward(AutogradContext* ctx, const Tensor& rest, const Tensor& base, const Tensor& h,
                        const Tensor& B, const Tensor& magnitude, const Tensor& weight_norm, double scaling,
                        bool recover_from_output) {
    const Tensor c = magnitude / weight_norm;
    Tensor z = at::addmm(rows(base), rows(h), B.t(), /*beta=*/1, /*alpha=*/scaling);
    const bool has_rest = rest.numel() > 0;
    // Recovering z divides by c, so no magnitude may be zero.
    const bool recoverable = !magnitude.eq(0).any().item<bool>();
    Saved saved = kZ;
    if (recoverable && !has_rest) saved = kOutput;
    if (recoverable && has_rest && recover_from_output && rest.dim() > 1) saved = kOutputAndRest;
    Tensor y;
    if (saved == kZ) {
      y = z * c;
      if (has_rest) y.add_(rest.dim() == 1 ? rest : rows(rest));
      ctx->save_for_backward({h, B, c, weight_norm, z});
    } else {
      // In place: z's buffer becomes the output.
      const Tensor rest_rows = saved == kOutputAndRest ? rows(rest).contiguous() : Tensor();
      scale_columns_(z, c.contiguous(), rest_rows);
      y = z;
      ctx->save_for_backward({h, B, c, magnitude, y, saved == kOutputAndRest ? rest : Tensor()});
    }
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["saved"] = static_cast<int64_t>(saved);
    ctx->saved_data["rest_dim"] = static_cast<int64_t>(has_rest ? rest.dim() : -1);
    return y.view(base.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& h = saved[0];
    const Tensor& B = saved[1];
    const Tensor& c = saved[2];
    const double s = ctx->saved_data["scaling"].toDouble();
    const int64_t rest_dim = ctx->saved_data["rest_dim"].toInt();
    const auto what = static_cast<Saved>(ctx->saved_data["saved"].toInt());
    const Tensor g2 = rows(grads[0]);

    Tensor d_rest, d_base, d_h, d_B, d_m;
    if (ctx->needs_input_grad(0) && rest_dim >= 0) {
      d_rest = rest_dim == 1 ? g2.sum(0) : grads[0];
    }
    // gc = g ⊙ c, and for the magnitude Σ_t g z / n with z as kept: z itself (saved[3] = n), or
    // from the output, where z / n = y / (c n) = y / m (saved[3] = m), or (y - rest) / m.
    Tensor gc, dot;
    const Tensor g_rows = g2.contiguous();
    scale_and_dot_columns(g_rows, c.contiguous(), saved[4].contiguous(),
                          what == kOutputAndRest ? rows(saved[5]).contiguous() : Tensor(), gc, dot);
    if (ctx->needs_input_grad(4)) d_m = dot.div_(saved[3]);
    if (ctx->needs_input_grad(1)) d_base = gc.view(grads[0].sizes());
    if (ctx->needs_input_grad(3)) d_B = gc.t().mm(rows(h)).mul_(s);
    if (ctx->needs_input_grad(2)) d_h = gc.mm(B).mul_(s).view(h.sizes());
    return {d_rest, d_base, d_h, d_B, d_m, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual) {
  const int64_t in = x.size(-1), out = weight.size(0);
  // One row (decoding): BLAS's matrix-vector product, about twice as fast as a one-row GEMM in
  // fp32. Not in bf16/fp16: ATen's mv for them is a plain loop (~2x slower than the fp32 GEMV per
  // byte) while their GEMM goes to oneDNN (~2x faster than that mv): they take the GEMM below.
  const bool blas_gemv = weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble;
  if (x.numel() == in && weight.dim() == 2 && blas_gemv && x.scalar_type() == weight.scalar_type()) {
    Tensor y = at::mv(weight, x.reshape({in}));
    if (bias.defined()) y = y + bias;
    if (residual.defined()) y = y + residual.reshape({out});
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    return y.view(sizes);
  }
  if (residual.defined()) {
    // Under autocast the residual stream keeps its dtype (fp32): transformers adds `residual + out`
    // outside the bf16 matmul, and an addmm would round the stream to bf16 once per layer.
    if (const auto dtype = cpu_autocast_dtype(); dtype && residual.scalar_type() != *dtype) {
      return residual + at::linear(x, weight, bias);
    }
    Tensor y = at::addmm(residual.reshape({-1, out}), x.reshape({-1, in}), weight.t());
    if (bias.defined()) y = y + bias;
    return y.view(residual.sizes());
  }
  return at::linear(x, weight, bias);
}

Tensor lora_a_product(const Tensor& x, const Tensor& A) {
  if (const auto dtype = cpu_autocast_dtype()) {
    const NoCpuAutocast no_autocast;
    return functional::linear(cast_floating(x, *dtype), cast_floating(A, *dtype));
  }
  return functional::linear(x, A);
}

std::vector<Tensor> stacked_lora_a_products(const Tensor& x, const std::vector<Tensor>& As) {
  std::vector<int64_t> ranks;
  for (const Tensor& A : As) ranks.push_back(A.size(0));
  return lora_a_product(x, at::cat(As, 0)).split_with_sizes(ranks, -1);
}

Tensor lora_b_update(const Tensor& result, const Tensor& h, const Tensor& B, double scaling) {
  if (const auto dtype = cpu_autocast_dtype()) {
    const NoCpuAutocast no_autocast;
    return LoraUpdate::apply(result, cast_floating(h, *dtype), cast_floating(B, *dtype), scaling);
  }
  return LoraUpdate::apply(result, h, B, scaling);
}

Tensor lora_update(const Tensor& result, const Tensor& x, const Tensor& A, const Tensor& B, double scaling) {
  return lora_b_update(result, lora_a_product(x, A), B, scaling);
}

Tensor dora_b_update(const Tensor& rest, const Tensor& base, const Tensor& h, const Tensor& B, const Tensor& magnitude,
                     const Tensor& weight_norm, double scaling, bool recover_from_output) {
  // LibTorch 1.13's custom functions reject undefined tensor inputs: "no rest" travels as an
  // empty tensor.
  const Tensor rest_or_empty = rest.defined() ? rest : at::empty({0}, base.options());
  if (const auto dtype = cpu_autocast_dtype()) {
    const NoCpuAutocast no_autocast;
    return DoraUpdate::apply(cast_floating(rest_or_empty, *dtype), cast_floating(base, *dtype),
                             cast_floating(h, *dtype), cast_floating(B, *dtype), cast_floating(magnitude, *dtype),
                             cast_floating(weight_norm.detach(), *dtype), scaling, recover_from_output);
  }
  return DoraUpdate::apply(rest_or_empty, base, h, B, magnitude, weight_norm.detach(), scaling, recover_from_output);
}

Tensor dora_update(const Tensor& rest, const Tensor& base, const Tensor& x, const Tensor& A, const Tensor& B,
                   const Tensor& magnitude, const Tensor& weight_norm, double scaling, bool recover_from_output) {
  return dora_b_update(rest, base, lora_a_product(x, A), B, magnitude, weight_norm, scaling, recover_from_output);
}

Tensor dora_weight_norm(const Tensor& weight, const Tensor& weight_row_sq_norm, const Tensor& A,
                        const Tensor& B, double scaling, double eps) {
  at::NoGradGuard no_grad;
  return dora_weight_norm_from_product(weight.mm(A.detach().to(weight.scalar_type()).t()), weight_row_sq_norm, A, B,
                                       scaling, eps);
}

Tensor dora_weight_norm_from_product(const Tensor& weight_times_a_t, const Tensor& weight_row_sq_norm,
                                     const Tensor& A, const Tensor& B, double scaling, double eps) {
  at::NoGradGuard no_grad;
  const auto dtype = weight_times_a_t.scalar_type();
  const Tensor a = A.detach().to(dtype);
  const Tensor b = B.detach().to(dtype);
  const Tensor& wa = weight_times_a_t;           // [out, r]
  const Tensor bg = b.mm(a.mm(a.t()));           // [out, r] = B (A Aᵀ)
  Tensor sq = weight_row_sq_norm.to(dtype).clone();
  sq.add_((b * wa).sum(1), 2.0 * scaling).add_((b * bg).sum(1), scaling * scaling);
  return sq.clamp_min_(0).sqrt_().clamp_min_(eps).to(A.scalar_type());
}

}  // namespace ranktune::peft::functional
