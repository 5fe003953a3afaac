#include "precision.h"

#include <ATen/autocast_mode.h>

namespace ranktune::train {

AutocastScope::AutocastScope(Precision precision) : active_(precision == Precision::bf16) {
  if (!active_) return;
  was_enabled_ = at::autocast::is_cpu_enabled();
  previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // As torch.autocast's __exit__: leaving the outermost scope drops the cached casts of the
  // weights, which the optimizer step is about to change.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(was_enabled_);
  at::autocast::set_autocast_cpu_dtype(previous_dtype_);
}

}  // namespace ranktune::train
