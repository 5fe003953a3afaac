// Where a training step's time goes: wall time per operator, counting only the outermost
// operator of each call stack (so nested calls are not counted twice), grouped by a phase the
// caller names ("forward", "backward", "optimizer"). Built on ATen's RecordFunction callbacks,
// which also see autograd nodes (the backward of each operator) and our custom functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace ranktune::bench {

class StepProfile {
 public:
  StepProfile();  // starts recording (one StepProfile at a time)
  ~StepProfile();
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;

  void set_phase(const std::string& phase);  // "" pauses recording
  // The `top` operators by time, each with its phase, calls, ms per step and share of `step_s`, and
  // the calls per step: outermost ones and all (nested included: the per-call overhead paid).
  nlohmann::ordered_json report(double step_s, int64_t steps, int top) const;

 private:
  uint64_t handle_;
};

// Current and peak resident memory of this process, in MB (from /proc/self/status).
double current_rss_mb();

}  // namespace ranktune::bench
