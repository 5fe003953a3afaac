#include "ranktune/core/autocast.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

namespace ranktune {

std::optional<at::ScalarType> cpu_autocast_dtype() {
  if (!at::autocast::is_cpu_enabled()) return std::nullopt;
  return at::autocast::get_autocast_cpu_dtype();
}

at::Tensor cast_floating(const at::Tensor& t, at::ScalarType dtype) {
  return t.defined() && t.is_floating_point() && t.scalar_type() != dtype ? t.to(dtype) : t;
}

NoCpuAutocast::NoCpuAutocast() : guard_(c10::DispatchKey::AutocastCPU) {}

CpuAutocastScope::CpuAutocastScope(std::optional<at::ScalarType> dtype) : active_(dtype.has_value()) {
  if (!active_) return;
  was_enabled_ = at::autocast::is_cpu_enabled();
  previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(*dtype);
  at::autocast::increment_nesting();
}

CpuAutocastScope::~CpuAutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(was_enabled_);
  at::autocast::set_autocast_cpu_dtype(previous_dtype_);
}

}  // namespace ranktune
