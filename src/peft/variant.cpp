#include "variant.h"

#include "ranktune/core/autocast.h"
#include "ranktune/peft/functional.h"

#include <ATen/ATen.h>

namespace ranktune::peft {
namespace {

using torch::Tensor;

// The adapter's input: cast to the adapter's dtype, then dropout when training. Returns `x`
// itself when neither applies, so callers can tell by identity that the base product is shared.
Tensor adapter_input(const LinearImpl& layer, const Adapter& adapter, const Tensor& x) {
  Tensor xa = x.scalar_type() == adapter.lora_A.scalar_type() ? x : x.to(adapter.lora_A.scalar_type());
  if (layer.is_training() && adapter.options.lora_dropout() > 0) {
    xa = at::dropout(xa, adapter.options.lora_dropout(), /*train=*/true);
  }
  return xa;
}

// h = xa Aᵀ: the caller's when it computed it for this adapter from x itself, else computed here.
Tensor input_product(const Adapter& adapter, const LayerInput& input, const Tensor& xa) {
  if (input.product_adapter == &adapter && xa.is_same(input.x)) return input.adapter_input_product;
  return functional::lora_a_product(xa, adapter.lora_A);
}

}  // namespace

Tensor base_output(const LinearImpl& layer, LayerInput& input) {
  if (input.base_product.defined()) {
    Tensor out = layer.bias.defined() ? input.base_product + layer.bias : input.base_product;
    return input.residual.defined() ? out + input.residual : out;
  }
  return layer.base_forward(input.x, input.residual);
}

namespace {

// ---- LoRA ----------------------------------------------------------------------------------------
class LoraVariant final : public AdapterVariant {
 public:
  const char* name() const override { return "lora"; }
  void init(LinearImpl&, Adapter&) const override {}

  Tensor forward(const LinearImpl& layer, const Adapter& adapter, LayerInput& input, Tensor result) const override {
    const Tensor xa = adapter_input(layer, adapter, input.x);
    if (!result.defined()) result = base_output(layer, input);
    return functional::lora_b_update(result, input_product(adapter, input, xa), adapter.lora_B, adapter.scaling);
  }

  void merge(const LinearImpl& layer, Adapter& adapter, Tensor& weight) const override {
    add_delta_weight_(layer, adapter, weight, +1.0);
  }
  void unmerge(const LinearImpl& layer, Adapter& adapter, Tensor& weight) const override {
    add_delta_weight_(layer, adapter, weight, -1.0);
  }
};

// ---- DoRA ----------------------------------------------------------------------------------------
// Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation". The weight norm is treated as
// a constant (§4.3), which is what lets the norm come from the low-rank identity without grad.
class DoraVariant final : public AdapterVariant {
 public:
  const char* name() const override { return "dora"; }

  void init(LinearImpl& layer, Adapter& adapter) const override {
    at::NoGradGuard no_grad;
    adapter.magnitude.copy_(layer.dora_weight_norm(adapter));
  }

  Tensor forward(const LinearImpl& layer, const Adapter& adapter, LayerInput& input, Tensor result) const override {
    const Tensor xa = adapter_input(layer, adapter, input.x);
    const Tensor norm = layer.dora_weight_norm(adapter);
    const auto dtype = xa.scalar_type();
    const bool shares_input = xa.is_same(input.x);
    Tensor base;
    if (shares_input) {
      if (!input.base_product.defined()) input.base_product = layer.base_product(input.x);
      base = input.base_product;
    } else if (layer.quantized()) {
      base = layer.base_product(xa);  // dequantized into xa's dtype
    } else {
      // Dropout or a dtype cast: PEFT recomputes the base product on the adapter's input.
      const Tensor w = layer.weight_out_in();
      base = functional::linear(xa, w.scalar_type() == dtype ? w : w.to(dtype));
    }
    // y = rest + c ⊙ (base + s·B A xa): rest is the bias (and the residual) when this adapter
    // alone sees x, else whatever the output holds beyond `base` (other adapters, or
    // Wx - W·drop(x)).
    Tensor rest;
    bool rest_is_residual = false;
    // Under autocast the kernel runs in bf16: the residual is added after it, in its own dtype, so
    // the residual stream is not rounded to bf16 (as functional::linear).
    const bool residual_after = !result.defined() && shares_input && input.residual.defined() &&
                                cpu_autocast_dtype().has_value();
    if (!result.defined() && shares_input) {
      rest = layer.bias.defined() ? layer.bias.to(dtype) : Tensor();
      if (input.residual.defined() && !residual_after) {
        rest = rest.defined() ? input.residual.to(dtype) + rest : input.residual.to(dtype);
        rest_is_residual = !layer.bias.defined() && input.residual.scalar_type() == dtype;
      }
    } else {
      const Tensor so_far = result.defined() ? result : base_output(layer, input);
      rest = so_far.to(dtype) - base;
    }
    const Tensor out_dtype_ref = result.defined() ? result : input.x;
    // A residual and its sum are kept by the surrounding layers (the next norm keeps the sum, the
    // previous one the residual), so backward may recover what it needs from them.
    Tensor y = functional::dora_b_update(rest, base, input_product(adapter, input, xa), adapter.lora_B,
                                         adapter.magnitude, norm, adapter.scaling,
                                         /*recover_from_output=*/rest_is_residual);
    if (y.scalar_type() != out_dtype_ref.scalar_type()) y = y.to(out_dtype_ref.scalar_type());
    return residual_after ? y + input.residual : y;
  }

  // W' = (m / ‖W + ΔW‖) ⊙ (W + ΔW), caching ‖W + ΔW‖ so unmerge can divide by the same factor.
  void merge(const LinearImpl& layer, Adapter& adapter, Tensor& weight) const override {
    at::NoGradGuard no_grad;
    const Tensor w_oi = layer.options.fan_in_fan_out() ? weight.t() : weight;
    const Tensor row_sq = at::linalg_vector_norm(w_oi, 2, {1}, false, c10::nullopt).square_();
    adapter.merged_weight_norm = functional::dora_weight_norm(w_oi, row_sq, adapter.lora_A, adapter.lora_B,
                                                              adapter.scaling);
    add_delta_weight_(layer, adapter, weight, +1.0);
    w_oi.mul_((adapter.magnitude / adapter.merged_weight_norm).to(weight.scalar_type()).unsqueeze(1));
  }

  void unmerge(const LinearImpl& layer, Adapter& adapter, Tensor& weight) const override {
    at::NoGradGuard no_grad;
    const Tensor w_oi = layer.options.fan_in_fan_out() ? weight.t() : weight;
    w_oi.div_((adapter.magnitude / adapter.merged_weight_norm).to(weight.scalar_type()).unsqueeze(1));
    add_delta_weight_(layer, adapter, weight, -1.0);
    adapter.merged_weight_norm = Tensor();
  }
};

}  // namespace

const AdapterVariant& variant_for(const AdapterOptions& options) {
  static const LoraVariant lora;
  static const DoraVariant dora;
  if (options.use_dora()) return dora;
  return lora;
}

void add_delta_weight_(const LinearImpl& layer, const Adapter& adapter, Tensor& weight, double sign) {
  at::NoGradGuard no_grad;
  const Tensor a = adapter.lora_A.to(weight.scalar_type());
  const Tensor b = adapter.lora_B.to(weight.scalar_type());
  const double alpha = sign * adapter.scaling;
  if (layer.options.fan_in_fan_out()) {
    weight.addmm_(a.t(), b.t(), /*beta=*/1, alpha);  // [in, out] += s Aᵀ Bᵀ
  } else {
    weight.addmm_(b, a, /*beta=*/1, alpha);          // [out, in] += s B A
  }
}

}  // namespace ranktune::peft
