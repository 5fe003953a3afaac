#pragma once
// train.precision applied to a run. bf16 runs each forward pass under CPU autocast, as
// `with torch.autocast("cpu", dtype=torch.bfloat16):` does: parameters (and so AdamW's state)
// stay in their own dtype (fp32 master copies), matmuls run in bf16, and the hand-written kernels
// cast at their entry (core/autocast.h). `auto` is decided once at start-up by a GEMM probe.
// Internal to the train layer.

#include "ranktune/core/autocast.h"
#include "ranktune/train/config.h"

#include <functional>
#include <string>

namespace ranktune::train {

// "fp32", "bf16" or "auto": the recipe's spelling.
const char* precision_name(Precision precision);

class AutocastScope {
 public:
  // precision is fp32 or bf16 (resolve `auto` first with decide_precision).
  explicit AutocastScope(Precision precision);

 private:
  CpuAutocastScope scope_;
};

// The probe's GEMM: a [rows, 576] × [576, 1536] product (a SmolLM2 gate/up projection of a
// 128-token micro-batch), small enough to take a few ms.
struct ProbeShape {
  int64_t rows = 128, inner = 576, cols = 1536;
  double flops() const { return 2.0 * static_cast<double>(rows * inner * cols); }
};

// Seconds one GEMM of `shape` takes in `dtype` (the best of a few, after a warm-up).
using GemmTimer = std::function<double(at::ScalarType dtype, const ProbeShape& shape)>;
double time_gemm(at::ScalarType dtype, const ProbeShape& shape);

// What train.precision resolved to, and for `auto` the speeds it was decided on.
struct PrecisionDecision {
  Precision requested = Precision::fp32;
  Precision chosen = Precision::fp32;
  bool probed = false;
  double fp32_gflops = 0, bf16_gflops = 0;  // the probe's measurements (probed only)
  int threads = 0;                          // intra-op threads the probe ran with

  std::string describe() const;  // one line for the log
};

// bf16 pays when its GEMM is at least this much faster than fp32's: below it the probe's noise
// (and the casts autocast adds) could make a "faster" bf16 the slower run.
constexpr double kBf16MinSpeedup = 1.2;

// fp32 and bf16 as requested; `auto` times the probe GEMM in both dtypes with `timer` and picks
// bf16 when it is at least kBf16MinSpeedup× faster.
PrecisionDecision decide_precision(Precision requested, const GemmTimer& timer = time_gemm);

}  // namespace ranktune::train
