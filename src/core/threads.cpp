#include "ranktune/core/threads.h"

#include <ATen/Parallel.h>

#include <thread>

namespace ranktune {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int configure_threads(int n) {
  const int wanted = n > 0 ? n : hardware_threads();
  if (at::get_num_threads() != wanted) at::set_num_threads(wanted);
  return at::get_num_threads();
}

}  // namespace ranktune
