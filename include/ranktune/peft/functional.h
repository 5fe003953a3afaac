#pragma once
// Stateless LoRA/DoRA kernels with hand-written backward passes. peft::Linear calls them (also
// from Python: ranktune.torch runs its layers through peft::Linear).
//
// Shapes: x [..., in], A [r, in], B [out, r], m and n [out], results [..., out]. s is the scaling.

#include <torch/types.h>

#include <vector>

namespace ranktune {
class QuantizedWeight;
}

namespace ranktune::peft::functional {

// x Wᵀ + b (+ residual) as at::linear, but a single row (decoding one token) goes through a
// matrix-vector product, which on CPU reads the weight about twice as fast as a one-row GEMM.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                     const torch::Tensor& residual = {});

// x Wᵀ + b (+ residual) for a frozen quantized W [out, in], dequantized into x's dtype
// `rows_per_chunk` rows at a time (0: the whole layer at once), in forward and in backward's
// input gradient (dx = g W); no weight gradient, and no dequantized copy outlives the call.
torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& weight, const torch::Tensor& bias = {},
                               const torch::Tensor& residual = {}, int64_t rows_per_chunk = 0);

// h = x Aᵀ, the adapter's input product [..., r], differentiable (one row: a matrix-vector product).
torch::Tensor lora_a_product(const torch::Tensor& x, const torch::Tensor& A);
// x Aᵢᵀ for several adapters reading the same x (q/k/v, gate/up) from one GEMM over the stacked
// Aᵢ, split back per adapter; gradients reach each Aᵢ and x through one GEMM each as well.
std::vector<torch::Tensor> stacked_lora_a_products(const torch::Tensor& x, const std::vector<torch::Tensor>& As);

// result + s · (x Aᵀ) Bᵀ.
// Saves only x and h = x Aᵀ for backward (plus references to A and B); no out-sized tensor.
// `result` may have another dtype than the adapter (the update is cast to it, as in PEFT).
torch::Tensor lora_update(const torch::Tensor& result, const torch::Tensor& x, const torch::Tensor& A,
                          const torch::Tensor& B, double scaling);
// The same from h = x Aᵀ computed by the caller (lora_a_product or stacked_lora_a_products).
torch::Tensor lora_b_update(const torch::Tensor& result, const torch::Tensor& h, const torch::Tensor& B,
                            double scaling);

// rest + c ⊙ (base + s · (x Aᵀ) Bᵀ) with c = m / n, where base = W x is computed by the caller
// (so that its gradient reaches x through the caller's graph) and n is the detached DoRA weight
// norm. `rest` is undefined (treated as 0), a bias [out], or a full [..., out] tensor.
//
// The magnitude's gradient needs the pre-scale activations z. When m has no zero, backward
// recovers them from the output instead of keeping a copy: z = y / c when rest is undefined (the
// only out-sized tensor kept is the output, which the next layer usually keeps anyway), and
// z = (y - rest) / c when `recover_from_output` says rest and the output are kept by the caller
// anyway (a residual stream: fp32 cancellation in y - rest costs the magnitude's gradient a
// relative error of about 1e-7 · |rest| / |y - rest|). Otherwise z is kept.
torch::Tensor dora_update(const torch::Tensor& rest, const torch::Tensor& base, const torch::Tensor& x,
                          const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& magnitude,
                          const torch::Tensor& weight_norm, double scaling, bool recover_from_output = false);
// The same from h = x Aᵀ computed by the caller.
torch::Tensor dora_b_update(const torch::Tensor& rest, const torch::Tensor& base, const torch::Tensor& h,
                            const torch::Tensor& B, const torch::Tensor& magnitude, const torch::Tensor& weight_norm,
                            double scaling, bool recover_from_output = false);

// ‖W + s · B A‖ per output row, from low-rank factors and the cached row norms ‖W_i‖²:
//   ‖W_i‖² + 2s · Σ_k B_ik (W Aᵀ)_ik + s² · Σ_k B_ik (B (A Aᵀ))_ik
// computed without the out×in sum (cost O(out·in·r)), clamped at 0 and floored at `eps` so a zero
// row gives m / n = 0 rather than NaN. `weight` is [out, in] (any view). No gradient.
torch::Tensor dora_weight_norm(const torch::Tensor& weight, const torch::Tensor& weight_row_sq_norm,
                               const torch::Tensor& A, const torch::Tensor& B, double scaling,
                               double eps = 1e-12);
// The same from W Aᵀ [out, r] computed by the caller (e.g. from a quantized W in row chunks).
torch::Tensor dora_weight_norm_from_product(const torch::Tensor& weight_times_a_t,
                                            const torch::Tensor& weight_row_sq_norm, const torch::Tensor& A,
                                            const torch::Tensor& B, double scaling, double eps = 1e-12);

}  // namespace ranktune::peft::functional
