#include "precision.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace ranktune::train {
namespace {

std::optional<at::ScalarType> autocast_dtype_of(Precision precision) {
  TORCH_CHECK(precision != Precision::automatic, "train.precision=auto must be resolved (decide_precision) before use");
  if (precision == Precision::bf16) return at::kBFloat16;
  return std::nullopt;
}

}  // namespace

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : p == Precision::fp32 ? "fp32" : "auto"; }

AutocastScope::AutocastScope(Precision precision) : scope_(autocast_dtype_of(precision)) {}

double time_gemm(at::ScalarType dtype, const ProbeShape& shape) {
  at::NoGradGuard no_grad;
  const auto options = at::TensorOptions().dtype(dtype);
  // Constant operands: the GEMM's speed does not depend on the values, and drawing random ones
  // would advance the global generator a resumed run has just restored.
  const at::Tensor a = at::full({shape.rows, shape.inner}, 0.5, options);
  const at::Tensor b = at::full({shape.cols, shape.inner}, 0.25, options);
  at::Tensor out = at::empty({shape.rows, shape.cols}, options);
  at::mm_out(out, a, b.t());  // warm-up: oneDNN builds its kernel on the first call
  double best = std::numeric_limits<double>::infinity();
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    at::mm_out(out, a, b.t());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

PrecisionDecision decide_precision(Precision requested, const GemmTimer& timer) {
  PrecisionDecision d;
  d.requested = requested;
  d.chosen = requested;
  if (requested != Precision::automatic) return d;
  const ProbeShape shape;
  d.probed = true;
  d.threads = at::get_num_threads();
  d.fp32_gflops = shape.flops() / std::max(timer(at::kFloat, shape), 1e-12) / 1e9;
  d.bf16_gflops = shape.flops() / std::max(timer(at::kBFloat16, shape), 1e-12) / 1e9;
  d.chosen = d.bf16_gflops >= kBf16MinSpeedup * d.fp32_gflops ? Precision::bf16 : Precision::fp32;
  return d;
}

std::string PrecisionDecision::describe() const {
  if (!probed) return c10::str("train.precision=", precision_name(chosen));
  return c10::str("train.precision=auto chose ", precision_name(chosen), ": a ", ProbeShape{}.rows, "x", ProbeShape{}.inner,
                  " by ", ProbeShape{}.inner, "x", ProbeShape{}.cols, " GEMM (", threads, " threads) ran at ",
                  static_cast<int64_t>(fp32_gflops), " GFLOP/s in fp32 and ", static_cast<int64_t>(bf16_gflops),
                  " GFLOP/s in bf16 (", std::round(100 * bf16_gflops / std::max(fp32_gflops, 1e-12)) / 100,
                  "x; bf16 needs ", kBf16MinSpeedup, "x)");
}

}  // namespace ranktune::train
