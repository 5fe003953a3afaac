#pragma once
// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup:
// the multiplier of the base learning rate at optimizer step `step` (0-based).

#include <cstdint>
#include <string>

namespace ranktune::train {

enum class Schedule { constant, linear, cosine };

// "constant", "linear" or "cosine"; throws naming `train.schedule` otherwise.
Schedule parse_schedule(const std::string& name);
std::string to_string(Schedule schedule);

// warmup: step / warmup (from 0 towards 1); then
//   constant: 1;  linear: (total - step) / (total - warmup);  cosine: ½(1 + cos(π · progress))
// never below 0.
double lr_multiplier(Schedule schedule, int64_t step, int64_t warmup_steps, int64_t total_steps);

}  // namespace ranktune::train
