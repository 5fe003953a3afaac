#pragma once
// Combining existing adapters into a new one, as PEFT's add_weighted_adapter defines it:
//   linear: A' = Σ √(wᵢ sᵢ) Aᵢ,  B' = Σ √(wᵢ sᵢ) Bᵢ        (all ranks equal; r' = r)
//   cat:    A' = [w₁ s₁ A₁; w₂ s₂ A₂; …],  B' = [B₁ B₂ …]   (r' = Σ rᵢ; B'A' = Σ wᵢ sᵢ Bᵢ Aᵢ exactly)
//   svd:    ΔW = Σ (wᵢ sᵢ) · sᵢ Bᵢ Aᵢ, then the top-r' SVD: B' = U_r' diag(S_r'), A' = Vh_r'
// The new adapter has lora_alpha = r', so its own scaling is 1 (√r' with use_rslora, as in PEFT).
// Note PEFT's svd applies each sᵢ twice (its weights are wᵢ·sᵢ and the deltas already carry
// sᵢ); we keep that so results match PEFT's.

#include "ranktune/peft/linear.h"

#include <torch/arg.h>

#include <optional>
#include <string>
#include <vector>

namespace ranktune::peft {

enum class CombinationType { linear, cat, svd };

// "linear", "cat" or "svd"; throws naming `combination_type` and the allowed values otherwise.
CombinationType parse_combination_type(const std::string& text);

struct WeightedAdapterOptions {
  TORCH_ARG(CombinationType, combination_type) = CombinationType::svd;
  // svd: the new rank (default: the largest source rank).
  TORCH_ARG(std::optional<int64_t>, svd_rank) = std::nullopt;
  // svd: clamp U and Vh to ±(this quantile of their joined values), as PEFT's svd_clamp.
  TORCH_ARG(std::optional<double>, svd_clamp) = std::nullopt;
};

// Adds adapter `new_name` with rank `new_rank` to `layer`, combined from the sources this layer
// has (others are skipped). Sources must not be DoRA adapters. Throws if none is present.
void add_weighted_adapter_to_layer(LinearImpl& layer, const std::vector<std::string>& adapters,
                                   const std::vector<double>& weights, const std::string& new_name,
                                   int64_t new_rank, bool use_rslora, const WeightedAdapterOptions& options);

}  // namespace ranktune::peft
