#pragma once
// Data-parallel training across processes: the few collective operations a trainer and an
// evaluator need (docs/distributed.md), behind an interface that keeps torch.distributed's c10d
// (TCPStore, ProcessGroupGloo; ProcessGroupNCCL in CUDA builds) inside src/train/distributed_c10d.cpp.
// A worker joins the group from the variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; TORCHELASTIC_USE_AGENT_STORE), so `ranktune train
// --nproc-per-node N`, torchrun and any launcher that sets them start the same workers.
//
//   auto communicator = ranktune::train::join_from_environment(600.0);  // null: one process
//   if (communicator) ranktune::train::all_reduce_gradients(*communicator, parameters);

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::train {

// A worker's place in the group, as torchrun's variables say.
struct DistributedEnv {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts the TCPStore at MASTER_ADDR:MASTER_PORT
  // and every worker is a client, keys under /worker/attempt_<TORCHELASTIC_RESTART_COUNT>.
  bool agent_store = false;
  int restart_count = 0;

  // nullopt when WORLD_SIZE is unset (not launched as a worker). A variable that is set but not a
  // number in range is an error naming it.
  static std::optional<DistributedEnv> from_environment();
};

// The collectives of one group of workers. Every call is collective: each worker makes the same
// calls in the same order. A peer that died or does not answer within the group's timeout is an
// error (ranktune::Error naming the operation), never a hang.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo" or "nccl".
  virtual std::string backend() const = 0;
  // Sums each tensor across workers, in place. Tensors are contiguous and of a dtype the backend
  // reduces (Gloo: float32, float64, int64; not bfloat16).
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  // Copies `root`'s tensors to every worker, in place.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root) = 0;
  virtual void barrier() = 0;
  // Every worker's bytes, in rank order (small data: evaluation results, counts).
  virtual std::vector<std::string> all_gather(const std::string& bytes) = 0;
};

// Joins the group `env` describes with Gloo (or NCCL for a CUDA `device_type`): rank 0 hosts the
// TCPStore unless torchrun's agent does; `timeout_seconds` bounds the rendezvous and every
// collective after it.
std::shared_ptr<Communicator> connect(const DistributedEnv& env, double timeout_seconds,
                                      const std::string& device_type = "cpu");
// The group this process was launched into, or null when it runs alone (WORLD_SIZE unset or 1).
std::shared_ptr<Communicator> join_from_environment(double timeout_seconds, const std::string& device_type = "cpu");

// ---- on top of the collectives ---------------------------------------------------------------------

// Sums the gradients of `parameters` across workers in float32 buckets of up to `bucket_bytes`
// (Gloo cannot reduce bf16; a parameter without a gradient counts as zeros and gets one). Only
// the trainable parameters are passed, so an adapter moves a few MB per step.
void all_reduce_gradients(Communicator& communicator, const std::vector<at::Tensor>& parameters,
                          int64_t bucket_bytes = 25 << 20);
// Rank 0's values of `parameters` on every worker (at the start: one starting point).
void broadcast_parameters(Communicator& communicator, const std::vector<at::Tensor>& parameters);
// Sums of a few numbers across workers, in float64.
std::vector<double> all_reduce_sum(Communicator& communicator, const std::vector<double>& values);

// Intra-op threads for this worker: `configured` when > 0; else, with LOCAL_WORLD_SIZE workers on
// this machine and no RANKTUNE_NUM_THREADS, the cores divided among them; else 0 (every core).
int worker_threads(int64_t configured);

}  // namespace ranktune::train
