#pragma once
// Initial values of a new adapter's lora_A and lora_B (PEFT's reset_lora_parameters, pissa_init
// and olora_init). PiSSA and OLoRA also rewrite the base weight to W - s·B A, so the layer's
// output is unchanged at initialisation.

#include "ranktune/peft/linear.h"

namespace ranktune::peft {

void initialize_adapter_weights(LinearImpl& layer, Adapter& adapter);

// Randomized truncated SVD (Halko et al. 2011, as torch.svd_lowrank): M ≈ U diag(S) Vᵀ with
// `rank` columns, after `niter` subspace iterations. Uses the global random generator.
struct LowRankSvd {
  torch::Tensor U, S, V;
};
LowRankSvd svd_lowrank(const torch::Tensor& matrix, int64_t rank, int64_t niter);

}  // namespace ranktune::peft
