#pragma once
// Stateless LoRA/DoRA kernels with hand-written backward passes. peft::Linear calls them, and so
// can any other module (the Python `ranktune.torch.inject` path does).
//
// Shapes: x [..., in], A [r, in], B [out, r], m and n [out], results [..., out]. s is the scaling.

#include <torch/types.h>

namespace ranktune::peft::functional {

// result + s · (x Aᵀ) Bᵀ.
// Saves only x and h = x Aᵀ for backward (plus references to A and B); no out-sized tensor.
// `result` may have another dtype than the adapter (the update is cast to it, as in PEFT).
torch::Tensor lora_update(const torch::Tensor& result, const torch::Tensor& x, const torch::Tensor& A,
                          const torch::Tensor& B, double scaling);

// rest + c ⊙ (base + s · (x Aᵀ) Bᵀ) with c = m / n, where base = W x is computed by the caller
// (so that its gradient reaches x through the caller's graph) and n is the detached DoRA weight
// norm. `rest` is undefined (treated as 0), a bias [out], or a full [..., out] tensor.
//
// When rest is undefined and m has no zero, backward recovers the pre-scale activations from the
// output (z = y / c) so the only out-sized tensor kept is the output itself, which the next
// layer usually keeps anyway; otherwise z is saved.
torch::Tensor dora_update(const torch::Tensor& rest, const torch::Tensor& base, const torch::Tensor& x,
                          const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& magnitude,
                          const torch::Tensor& weight_norm, double scaling);

// ‖W + s · B A‖ per output row, from low-rank factors and the cached row norms ‖W_i‖²:
//   ‖W_i‖² + 2s · Σ_k B_ik (W Aᵀ)_ik + s² · Σ_k B_ik (B (A Aᵀ))_ik
// computed without the out×in sum (cost O(out·in·r)), clamped at 0 and floored at `eps` so a zero
// row gives m / n = 0 rather than NaN. `weight` is [out, in] (any view). No gradient.
torch::Tensor dora_weight_norm(const torch::Tensor& weight, const torch::Tensor& weight_row_sq_norm,
                               const torch::Tensor& A, const torch::Tensor& B, double scaling,
                               double eps = 1e-12);

}  // namespace ranktune::peft::functional
