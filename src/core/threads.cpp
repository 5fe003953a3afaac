#include "ranktune/core/threads.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

namespace ranktune {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int configure_threads(int n) {
  int wanted = n > 0 ? n : hardware_threads();
  if (n <= 0) {
    if (const char* env = std::getenv("RANKTUNE_NUM_THREADS")) {
      const int from_env = std::atoi(env);
      if (from_env > 0) wanted = from_env;
    }
  }
  if (at::get_num_threads() != wanted) at::set_num_threads(wanted);
  return at::get_num_threads();
}

}  // namespace ranktune
