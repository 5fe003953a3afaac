// The peft layer's hand-written backward passes under bf16 autocast (train.precision: bf16)
// against fp32 autograd of the same math written with plain ATen ops: outputs and every gradient
// agree to kBf16Tolerance (relative L2 error), gradients of fp32 inputs come back fp32, and fp32
// runs are untouched by the autocast entry points.
//
// Why 2e-2: bf16 keeps 8 significant bits (a rounding of at most 2^-9 ≈ 2e-3 relative per value);
// each product rounds its inputs once and its output once, and the chain here is up to four
// products long, so ≈ 1e-2 is expected; measured: 2.9e-3 to 5.2e-3.

#include "ranktune/core/autocast.h"
#include "ranktune/core/quantized_weight.h"
#include "ranktune/peft/functional.h"
#include "bf16_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace ranktune::peft {
namespace {

using ranktune::testing::expect_bf16_agrees;
using torch::Tensor;

constexpr double kBf16Tolerance = 2e-2;

TEST(Bf16Kernels, LoraUpdateAgreesWithFp32Autograd) {
  at::manual_seed(1);
  // result, x, A, B
  const std::vector<Tensor> in = {at::randn({3, 20, 48}), at::randn({3, 20, 32}), at::randn({8, 32}) * 0.2,
                                  at::randn({48, 8}) * 0.2};
  expect_bf16_agrees(
      in, [](const auto& t) { return functional::lora_update(t[0], t[1], t[2], t[3], 0.5); },
      [](const auto& t) { return t[0] + 0.5 * at::linear(at::linear(t[1], t[2]), t[3]); }, "LoraUpdate", kBf16Tolerance,
      at::kFloat /* the update is added to the result in the result's dtype */);
}

TEST(Bf16Kernels, DoraUpdateAgreesWithFp32Autograd) {
  at::manual_seed(2);
  // rest, base, x, A, B, magnitude; the weight norm is a constant (DoRA §4.3).
  const std::vector<Tensor> in = {at::randn({3, 20, 48}), at::randn({3, 20, 48}), at::randn({3, 20, 32}),
                                  at::randn({8, 32}) * 0.2, at::randn({48, 8}) * 0.2, at::rand({48}) + 0.5};
  const Tensor norm = at::rand({48}) + 1.0;
  expect_bf16_agrees(
      in, [&](const auto& t) { return functional::dora_update(t[0], t[1], t[2], t[3], t[4], t[5], norm, 0.5); },
      [&](const auto& t) {
        const Tensor c = t[5] / norm;
        return t[0] + c * (t[1] + 0.5 * at::linear(at::linear(t[2], t[3]), t[4]));
      },
      "DoraUpdate", kBf16Tolerance, at::kBFloat16);
}

TEST(Bf16Kernels, QuantizedLinearAgreesWithFp32AutogradOfTheDequantizedWeight) {
  for (const QuantFormat format : {QuantFormat::int8, QuantFormat::nf4}) {
    at::manual_seed(3);
    const QuantizedWeight w = QuantizedWeight::quantize(at::randn({48, 64}) * 0.1, format);
    const Tensor dense = w.dequantize(at::kFloat);
    for (const int64_t chunk : {int64_t{0}, int64_t{16}}) {
      expect_bf16_agrees(
          {at::randn({3, 20, 64})}, [&](const auto& t) { return functional::quantized_linear(t[0], w, {}, {}, chunk); },
          [&](const auto& t) { return at::linear(t[0], dense); },
          c10::str("QuantizedMatmul ", quant_format_name(format), " chunk ", chunk), kBf16Tolerance, at::kBFloat16);
    }
  }
}

TEST(Bf16Kernels, WithoutAutocastTheKernelsAreUnchanged) {
  at::manual_seed(4);
  const Tensor result = at::randn({5, 16}), x = at::randn({5, 12}), a = at::randn({4, 12}), b = at::randn({16, 4});
  const Tensor plain = functional::lora_update(result, x, a, b, 2.0);
  EXPECT_EQ(plain.scalar_type(), at::kFloat);
  // Bit-for-bit: the same addmm the kernel always ran.
  EXPECT_TRUE(at::equal(plain, at::addmm(result, at::linear(x, a), b.t(), 1, 2.0)));
  {
    const CpuAutocastScope off(std::nullopt);
    EXPECT_FALSE(cpu_autocast_dtype().has_value());
    EXPECT_TRUE(at::equal(functional::lora_update(result, x, a, b, 2.0), plain));
  }
}

}  // namespace
}  // namespace ranktune::peft
