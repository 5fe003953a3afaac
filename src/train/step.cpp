#include "step.h"

#include "ranktune/core/log.h"
#include "ranktune/train/schedule.h"

#include <c10/util/StringUtil.h>
#include <torch/nn/utils/clip_grad.h>

#include <chrono>
#include <cmath>
#include <limits>

namespace ranktune::train {

double accumulate_gradients(const std::vector<data::Batch>& micro_batches, const MicroBatchLoss& loss_of) {
  int64_t loss_tokens = 0;
  for (const auto& batch : micro_batches) loss_tokens += batch.loss_tokens;
  if (loss_tokens == 0) return std::numeric_limits<double>::quiet_NaN();
  double loss = 0;
  for (const auto& batch : micro_batches) {
    if (batch.loss_tokens == 0) continue;
    // With one micro-batch the share is exactly 1: the same numbers as without accumulation.
    const double share = static_cast<double>(batch.loss_tokens) / static_cast<double>(loss_tokens);
    const torch::Tensor micro_loss = loss_of(batch);
    const double value = micro_loss.item<double>();
    if (!std::isfinite(value)) return value;
    (micro_loss * share).backward();
    loss += value * share;
  }
  return loss;
}

double accumulate_gradients(const std::vector<data::Batch>& micro_batches, const MicroBatchLoss& loss_of,
                            const std::vector<torch::Tensor>& parameters, Communicator& communicator,
                            double* reduce_seconds) {
  int64_t local_tokens = 0;
  for (const auto& batch : micro_batches) local_tokens += batch.loss_tokens;
  const double loss_tokens = all_reduce_sum(communicator, {static_cast<double>(local_tokens)})[0];
  double loss = 0;
  if (loss_tokens > 0) {
    for (const auto& batch : micro_batches) {
      if (batch.loss_tokens == 0) continue;
      const double share = static_cast<double>(batch.loss_tokens) / loss_tokens;
      const torch::Tensor micro_loss = loss_of(batch);
      const double value = micro_loss.item<double>();
      if (!std::isfinite(value)) {
        loss = value;
        break;  // the gradients are still reduced below: every worker makes the same calls
      }
      (micro_loss * share).backward();
      loss += value * share;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  all_reduce_gradients(communicator, parameters);
  if (reduce_seconds) *reduce_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (loss_tokens == 0) return std::numeric_limits<double>::quiet_NaN();
  return all_reduce_sum(communicator, {loss})[0];
}

StepResult optimizer_step(TrainingOptimizer& optimizer, const std::vector<data::Batch>& micro_batches,
                          const MicroBatchLoss& loss_of, const TrainSection& settings, int64_t warmup_steps,
                          TrainerState& progress, Communicator* communicator) {
  double reduce_seconds = 0;
  const double loss = communicator ? accumulate_gradients(micro_batches, loss_of, optimizer.parameters(), *communicator,
                                                          &reduce_seconds)
                                   : accumulate_gradients(micro_batches, loss_of);
  StepResult result = apply_gradients(optimizer, loss, settings, warmup_steps, progress);
  result.reduce_seconds = reduce_seconds;
  return result;
}

StepResult apply_gradients(TrainingOptimizer& optimizer, double loss, const TrainSection& settings, int64_t warmup_steps,
                           TrainerState& progress) {
  StepResult result;
  result.loss = loss;
  result.grad_norm = std::numeric_limits<double>::quiet_NaN();
  if (std::isfinite(result.loss)) {
    const double max_norm = settings.max_grad_norm > 0 ? settings.max_grad_norm : std::numeric_limits<double>::infinity();
    result.grad_norm = torch::nn::utils::clip_grad_norm_(optimizer.parameters(), max_norm);
  }
  result.applied = std::isfinite(result.loss) && std::isfinite(result.grad_norm);
  if (result.applied) {
    optimizer.set_lr_multiplier(
        lr_multiplier(settings.schedule, progress.step, warmup_steps, progress.total_steps));
    optimizer.step();
    progress.nan_streak = 0;
  } else {
    ++progress.nan_streak;
    log_warning(c10::str("step ", progress.step + 1, ": non-finite loss or gradient; step skipped (",
                         progress.nan_streak, " in a row, the run stops at ", settings.max_nan_steps, ")"));
  }
  optimizer.zero_grad();
  ++progress.step;
  return result;
}

}  // namespace ranktune::train
