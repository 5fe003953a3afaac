#pragma once
// Projections that read the same input (q/k/v, gate/up) with one GEMM over their frozen weights:
// the weights live in one buffer and each projection's registered `weight` is a view into it,
// so nothing is stored twice and each projection keeps its name, its adapters and its merges.
// Their adapters' input products x Aᵢᵀ are one GEMM too (peft::stacked_adapter_inputs).

#include "ranktune/peft/linear.h"

#include <optional>
#include <vector>

namespace ranktune::model {

class FusedProjections {
 public:
  FusedProjections() = default;
  // Moves the weights of `layers` ([out_i, in] each, same in and dtype) into one buffer.
  explicit FusedProjections(std::vector<peft::LinearImpl*> layers);

  // Each layer's forward(x), with the shared GEMMs where they apply.
  std::vector<torch::Tensor> forward(const torch::Tensor& x) const;

 private:
  // W_i x for every layer from one GEMM (no bias), or nullopt when the fast path does not apply:
  // a weight trains (full fine-tuning needs each weight's own gradient) or was replaced.
  std::optional<std::vector<torch::Tensor>> base_products(const torch::Tensor& x) const;
  // Every layer stores its weight quantized (then there is no shared buffer).
  bool quantized() const;

  std::vector<peft::LinearImpl*> layers_;
  std::vector<int64_t> sizes_;
  torch::Tensor weight_;  // [Σ out_i, in]
};

}  // namespace ranktune::model
