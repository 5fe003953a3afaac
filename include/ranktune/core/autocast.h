#pragma once
// CPU autocast (torch.autocast("cpu", dtype=torch.bfloat16)) as the hand-written kernels see it.
// A custom autograd function's backward runs outside autocast, so a kernel that let autocast pick
// dtypes op by op in forward would meet bf16 and fp32 tensors in the same product in backward.
// The kernels' entry points therefore follow torch.cuda.amp.custom_fwd(cast_inputs=...): under
// autocast their floating inputs are cast to the autocast dtype (differentiably: fp32 parameters
// still receive fp32 gradients) and autocast is off inside, so forward and backward see one dtype.
// Without autocast nothing changes: fp32 runs are bit-for-bit what they were.

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <optional>

namespace ranktune {

// The dtype CPU autocast computes matmuls in, or nullopt when CPU autocast is off.
std::optional<at::ScalarType> cpu_autocast_dtype();

// t cast to dtype when it is a defined floating-point tensor of another dtype, else t itself.
at::Tensor cast_floating(const at::Tensor& t, at::ScalarType dtype);

// Switches CPU autocast off for the scope (a kernel's body).
class NoCpuAutocast {
 public:
  NoCpuAutocast();

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

// Turns CPU autocast on with `dtype` for the scope (nullopt: changes nothing) and restores the
// previous state when it ends, also on an exception. Leaving the outermost scope drops autocast's
// cached casts of the weights, as torch.autocast's __exit__ does (an optimizer step is about to
// change them). Used by train.precision and by checkpointing's recomputation, which must see the
// autocast state its forward saw.
class CpuAutocastScope {
 public:
  explicit CpuAutocastScope(std::optional<at::ScalarType> dtype);
  ~CpuAutocastScope();
  CpuAutocastScope(const CpuAutocastScope&) = delete;
  CpuAutocastScope& operator=(const CpuAutocastScope&) = delete;

 private:
  bool active_ = false;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::ScalarType::BFloat16;
};

}  // namespace ranktune
