#pragma once
// Test helper for the hand-written kernels under bf16 autocast: a kernel run under
// CpuAutocastScope(bf16) against fp32 autograd of the same math written with plain ATen ops.

#include "ranktune/core/autocast.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::testing {

// ‖a - b‖ / ‖b‖ in double.
inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  return (ad - bd).norm().item<double>() / std::max(bd.norm().item<double>(), 1e-30);
}

using KernelOf = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Runs `kernel` under bf16 autocast and `reference` in fp32, each on its own leaf copies of the
// fp32 `inputs`, backpropagates the same upstream gradient, and expects the output and every
// input's gradient within `tolerance` (relative L2 error), the gradients fp32 as their inputs, and
// (when given) the kernel's output in `output_dtype`. The largest error is recorded as a test
// property "<what>_relative_error".
inline void expect_bf16_agrees(const std::vector<at::Tensor>& inputs, const KernelOf& kernel, const KernelOf& reference,
                               const std::string& what, double tolerance,
                               std::optional<at::ScalarType> output_dtype = std::nullopt) {
  auto leaves = [&] {
    std::vector<at::Tensor> out;
    for (const at::Tensor& t : inputs) out.push_back(t.detach().clone().requires_grad_(true));
    return out;
  };
  const auto ours = leaves(), ref = leaves();
  at::Tensor y;
  {
    const CpuAutocastScope autocast(at::kBFloat16);
    y = kernel(ours);
  }
  if (output_dtype) EXPECT_EQ(y.scalar_type(), *output_dtype) << what;
  const at::Tensor y_ref = reference(ref);
  ASSERT_EQ(y_ref.scalar_type(), at::kFloat) << what;
  double worst = relative_error(y, y_ref);
  EXPECT_LT(worst, tolerance) << what << " output";
  const at::Tensor g = y_ref.dim() == 0 ? at::ones({}) : at::randn(y_ref.sizes());
  y.backward(g.to(y.scalar_type()));
  y_ref.backward(g);
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(ours[i].grad().defined()) << what << " input " << i;
    EXPECT_EQ(ours[i].grad().scalar_type(), at::kFloat) << what << " input " << i << ": an fp32 input gets an fp32 gradient";
    const double error = relative_error(ours[i].grad(), ref[i].grad());
    EXPECT_LT(error, tolerance) << what << " gradient of input " << i;
    worst = std::max(worst, error);
  }
  std::string key = what + "_relative_error";
  std::replace(key.begin(), key.end(), ' ', '_');
  ::testing::Test::RecordProperty(key, std::to_string(worst));
}

}  // namespace ranktune::testing
