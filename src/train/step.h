#pragma once
// One optimizer step of the training loop: the gradients of the step's micro-batches accumulated,
// clipped and applied; or, when the loss or the gradient is not finite, the step skipped without
// changing a parameter or the optimizer state. Internal to the train layer.

#include "checkpoint.h"
#include "optimizer.h"
#include "ranktune/data/batching.h"
#include "ranktune/train/config.h"
#include "ranktune/train/distributed.h"

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

// The same across the workers of a group, each holding its share of every micro-batch (an empty
// share has no loss tokens): each micro-batch loss is weighted by its tokens over the step's
// loss tokens on all workers (all-reduced first), the gradients are summed across workers, so
// every worker gets the gradient of the one global batch; the loss returned is the global token
// mean, the same on every worker (NaN everywhere when any worker's is not finite).
double accumulate_gradients(const std::vector<data::Batch>& micro_batches, const MicroBatchLoss& loss_of,
                            const std::vector<torch::Tensor>& parameters, Communicator& communicator,
                            double* reduce_seconds = nullptr);

struct StepResult {
  double loss = 0;        // as accumulate_gradients returns it
  double grad_norm = 0;   // total gradient norm before clipping; NaN when the loss is not finite
  bool applied = false;   // false: skipped for a non-finite loss or gradient
  double reduce_seconds = 0;  // data parallelism: time in the gradient all-reduce (0 in one process)
};

// accumulate_gradients, then clipping to settings.max_grad_norm (0: none) and an AdamW step at the
// schedule's learning rate for progress.step. A non-finite loss or gradient norm skips the step: no
// parameter, moment or step count changes, progress.nan_streak grows by one and a warning says so.
// An applied step resets the streak. Either way the gradients are zeroed and progress.step advances.
// With a communicator, the gradients are the group's (the distributed accumulate_gradients), so every
// worker clips, skips or steps alike.
StepResult optimizer_step(TrainingOptimizer& optimizer, const std::vector<data::Batch>& micro_batches,
                          const MicroBatchLoss& loss_of, const TrainSection& settings, int64_t warmup_steps,
                          TrainerState& progress, Communicator* communicator = nullptr);

// The second half of optimizer_step, for a trainer that accumulates its own gradients (GRPO: its
// loss is not a mean over loss tokens): `loss` is the step's loss with the gradients already
// accumulated; clipping, the AdamW step or the skip, zeroing and progress as above.
StepResult apply_gradients(TrainingOptimizer& optimizer, double loss, const TrainSection& settings, int64_t warmup_steps,
                           TrainerState& progress);

}  // namespace ranktune::train
