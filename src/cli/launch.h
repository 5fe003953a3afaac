#pragma once
// `--nproc-per-node N`: N local data-parallel workers of this program, started the way torchrun
// starts them (docs/distributed.md). Reusable by any training command (train, grpo).

#include <string>
#include <vector>

namespace ranktune::cli {

// Runs `nproc` copies of this executable with `arguments` (what follows the program name, e.g.
// {"train", "recipe.yaml", "train.max_steps=10"}), each with torchrun's variables set (RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT a free port), and
// waits for them. A worker that fails (non-zero status or killed) is named on stderr with its
// status, and the others are stopped (SIGTERM, then SIGKILL after `grace_seconds`). SIGINT, SIGTERM
// and SIGHUP to the launcher are forwarded, so the workers checkpoint and stop together; a second
// one kills them. Workers die with the launcher (PR_SET_PDEATHSIG). Returns the exit code: 0 when
// every worker succeeded, 128 + the signal when a forwarded signal stopped them, else 1.
int launch_local_workers(int nproc, const std::vector<std::string>& arguments, double grace_seconds = 10);

}  // namespace ranktune::cli
