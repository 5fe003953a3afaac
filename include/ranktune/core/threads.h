#pragma once
// LibTorch starts with one intra-op thread on some machines (this project's CI among them).
// Programs call configure_threads() once at start-up.

namespace ranktune {

// Sets LibTorch's intra-op thread count: n > 0 uses n threads; n <= 0 uses $RANKTUNE_NUM_THREADS
// when set, else every core. (Two processes with a thread per core each slow down far more than
// twice: OpenMP threads spin while they wait.)
// Returns the count now in effect.
int configure_threads(int n = 0);

// The number of cores std::thread reports (at least 1).
int hardware_threads();

}  // namespace ranktune
