#pragma once
// Cooperative interruption of long loops (token-by-token generation, evaluation). Whoever owns the
// signals — a Python binding, a CLI command — installs a check for the current thread; the loops
// call throw_if_interrupted() at safe points (between tokens), which throws Interrupted when the
// check says the user asked to stop. Without a check installed it costs one thread-local read.
//
//   ranktune::ScopedInterruptCheck guard([] { return g_stop_requested.load(); });
//   auto out = ranktune::model::generate(model, prompts, options);   // throws Interrupted

#include "ranktune/core/error.h"

#include <functional>

namespace ranktune {

class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
};

// Installs `check` for this thread for the guard's lifetime (restoring the previous one after).
class ScopedInterruptCheck {
 public:
  explicit ScopedInterruptCheck(std::function<bool()> check);
  ~ScopedInterruptCheck();
  ScopedInterruptCheck(const ScopedInterruptCheck&) = delete;
  ScopedInterruptCheck& operator=(const ScopedInterruptCheck&) = delete;

 private:
  std::function<bool()> previous_;
};

// Throws Interrupted when this thread's check says so; does nothing without a check.
void throw_if_interrupted();

}  // namespace ranktune
