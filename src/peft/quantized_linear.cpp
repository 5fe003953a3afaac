// functional::quantized_linear: the base product of a layer whose frozen weight is stored
// quantized (QuantizedWeight), dequantized on the fly in forward and in backward's dx = g W.

#include "ranktune/core/autocast.h"
#include "ranktune/core/quantized_weight.h"
#include "ranktune/peft/functional.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace ranktune::peft::functional {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Row chunks [first, first + count) of `rows` rows, `per_chunk` at a time (0: one chunk).
template <typename F>
void for_row_chunks(int64_t rows, int64_t per_chunk, F&& f) {
  const int64_t step = per_chunk > 0 ? per_chunk : rows;
  for (int64_t first = 0; first < rows; first += step) f(first, std::min(step, rows - first));
}

// x2 [N, in] Wᵀ -> [N, out], W dequantized chunk by chunk into x2's dtype.
Tensor matmul_wt(const Tensor& x2, const QuantizedWeight& w, int64_t per_chunk) {
  if (per_chunk <= 0 || per_chunk >= w.rows()) return x2.mm(w.dequantize(x2.scalar_type()).t());
  Tensor out = at::empty({x2.size(0), w.rows()}, x2.options());
  for_row_chunks(w.rows(), per_chunk, [&](int64_t first, int64_t count) {
    Tensor slice = out.narrow(1, first, count);
    at::mm_out(slice, x2, w.dequantize(first, count, x2.scalar_type()).t());
  });
  return out;
}

// g2 [N, out] W -> [N, in].
Tensor matmul_w(const Tensor& g2, const QuantizedWeight& w, int64_t per_chunk) {
  if (per_chunk <= 0 || per_chunk >= w.rows()) return g2.mm(w.dequantize(g2.scalar_type()));
  Tensor dx = at::zeros({g2.size(0), w.cols()}, g2.options());
  for_row_chunks(w.rows(), per_chunk, [&](int64_t first, int64_t count) {
    dx.addmm_(g2.narrow(1, first, count), w.dequantize(first, count, g2.scalar_type()));
  });
  return dx;
}

// y = x Wᵀ with W frozen: dx = g W. Backward keeps the quantized parts (references), not x.
struct QuantizedMatmul : public torch::autograd::Function<QuantizedMatmul> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const QuantizedWeight& w, int64_t per_chunk) {
    const int64_t in = x.size(-1);
    Tensor y = matmul_wt(x.reshape({-1, in}), w, per_chunk);
    auto sizes = x.sizes().vec();
    sizes.back() = w.rows();
    ctx->saved_data["codes"] = w.codes();
    ctx->saved_data["scales"] = w.scales();
    ctx->saved_data["scale_scales"] = w.double_quant() ? w.scale_scales() : at::empty({0});
    ctx->saved_data["scale_offset"] = static_cast<double>(w.scale_offset());
    ctx->saved_data["format"] = static_cast<int64_t>(w.format());
    ctx->saved_data["rows"] = w.rows();
    ctx->saved_data["cols"] = w.cols();
    ctx->saved_data["per_chunk"] = per_chunk;
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    return y.view(sizes);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto& d = ctx->saved_data;
    const QuantizedWeight w = QuantizedWeight::from_parts(
        static_cast<QuantFormat>(d["format"].toInt()), d["rows"].toInt(), d["cols"].toInt(), d["codes"].toTensor(),
        d["scales"].toTensor(), d["scale_scales"].toTensor(), static_cast<float>(d["scale_offset"].toDouble()));
    const Tensor g2 = grads[0].reshape({-1, w.rows()});
    Tensor dx = matmul_w(g2, w, d["per_chunk"].toInt()).view(d["x_sizes"].toIntVector());
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor quantized_linear(const Tensor& x, const QuantizedWeight& weight, const Tensor& bias, const Tensor& residual,
                        int64_t rows_per_chunk) {
  Tensor y;
  if (const auto dtype = cpu_autocast_dtype()) {  // dequantized into the autocast dtype
    const NoCpuAutocast no_autocast;
    y = QuantizedMatmul::apply(cast_floating(x, *dtype), weight, rows_per_chunk);
  } else {
    y = QuantizedMatmul::apply(x, weight, rows_per_chunk);
  }
  if (bias.defined()) y = y + bias;
  if (residual.defined()) y = y + residual;
  return y;
}

}  // namespace ranktune::peft::functional
