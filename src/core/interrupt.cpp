#include "ranktune/core/interrupt.h"

#include <utility>

namespace ranktune {
namespace {

thread_local std::function<bool()> current_check;

}  // namespace

ScopedInterruptCheck::ScopedInterruptCheck(std::function<bool()> check) : previous_(std::move(current_check)) {
  current_check = std::move(check);
}

ScopedInterruptCheck::~ScopedInterruptCheck() { current_check = std::move(previous_); }

void throw_if_interrupted() {
  if (current_check && current_check()) throw Interrupted();
}

}  // namespace ranktune
