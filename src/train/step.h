#pragma once
// One optimizer step of the training loop: the gradients of the step's micro-batches accumulated,
// clipped and applied; or, when the loss or the gradient is not finite, the step skipped without
// changing a parameter or the optimizer state. Internal to the train layer.

#include "checkpoint.h"
#include "optimizer.h"
#include "ranktune/data/batching.h"
#include "ranktune/train/config.h"

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace ranktune::train {

// The mean loss of one micro-batch over its loss tokens, as CausalLM::forward returns it.
using MicroBatchLoss = std::function<torch::Tensor(const data::Batch&)>;

// Forward and backward over the micro-batches of one step. Each micro-batch's mean loss is weighted
// by its share of the step's loss tokens, so the gradients are those of one batch holding every
// example (a plain average of the micro-batch means would weigh a token of a short micro-batch
// more). Micro-batches without loss tokens are skipped. Returns the mean loss over the step's loss
// tokens; the first non-finite micro-batch loss as soon as one occurs (the rest are not run); NaN
// when no micro-batch has a loss token.
double accumulate_gradients(const std::vector<data::Batch>& micro_batches, const MicroBatchLoss& loss_of);

struct StepResult {
  double loss = 0;        // as accumulate_gradients returns it
  double grad_norm = 0;   // total gradient norm before clipping; NaN when the loss is not finite
  bool applied = false;   // false: skipped for a non-finite loss or gradient
};

// accumulate_gradients, then clipping to settings.max_grad_norm (0: none) and an AdamW step at the
// schedule's learning rate for progress.step. A non-finite loss or gradient norm skips the step: no
// parameter, moment or step count changes, progress.nan_streak grows by one and a warning says so.
// An applied step resets the streak. Either way the gradients are zeroed and progress.step advances.
StepResult optimizer_step(TrainingOptimizer& optimizer, const std::vector<data::Batch>& micro_batches,
                          const MicroBatchLoss& loss_of, const TrainSection& settings, int64_t warmup_steps,
                          TrainerState& progress);

// The second half of optimizer_step, for a trainer that accumulates its own gradients (GRPO: its
// loss is not a mean over loss tokens): `loss` is the step's loss with the gradients already
// accumulated; clipping, the AdamW step or the skip, zeroing and progress as above.
StepResult apply_gradients(TrainingOptimizer& optimizer, double loss, const TrainSection& settings, int64_t warmup_steps,
                           TrainerState& progress);

}  // namespace ranktune::train
