#pragma once
// train.precision applied to a forward pass: bf16 runs it under CPU autocast, as
// `with torch.autocast("cpu", dtype=torch.bfloat16):` does, and the previous autocast state comes
// back when the scope ends, also on an exception. Internal to the train layer.

#include "ranktune/train/config.h"

#include <c10/core/ScalarType.h>

namespace ranktune::train {

class AutocastScope {
 public:
  explicit AutocastScope(Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;  // fp32 changes nothing
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::BFloat16;
};

}  // namespace ranktune::train
