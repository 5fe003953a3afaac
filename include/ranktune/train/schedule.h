#pragma once
// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup:
// the multiplier of the base learning rate at optimizer step `step` (0-based).

#include <cstdint>

namespace ranktune::train {

// train.schedule (its names are parsed once, with the recipe: config.cpp).
enum class Schedule { constant, linear, cosine };

// warmup: step / warmup (from 0 towards 1); then
//   constant: 1;  linear: (total - step) / (total - warmup);  cosine: ½(1 + cos(π · progress))
// never below 0.
double lr_multiplier(Schedule schedule, int64_t step, int64_t warmup_steps, int64_t total_steps);

}  // namespace ranktune::train
