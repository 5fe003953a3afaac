#pragma once
// Activation (gradient) checkpointing: run a block without keeping its activations and recompute
// them during backward. Saves memory proportional to the block's activations for about one more
// forward pass of compute.

#include <torch/types.h>

#include <functional>

namespace ranktune::model {

using Block = std::function<torch::Tensor(const torch::Tensor&)>;

// fn(x), with fn's intermediate activations recomputed in backward instead of stored. Gradients
// reach fn's parameters and x. The global CPU generator is restored for the recomputation, so
// dropout masks are the same both times (and the generator's sequence is left as without
// checkpointing).
torch::Tensor checkpointed(const Block& fn, const torch::Tensor& x);

}  // namespace ranktune::model
