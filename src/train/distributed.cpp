// torchrun's variables read once, and the collectives a trainer builds on the Communicator
// (gradient buckets, the parameter broadcast, sums of a few numbers).

#include "ranktune/train/distributed.h"

#include "ranktune/core/error.h"
#include "ranktune/core/threads.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

namespace ranktune::train {
namespace {

// An integer environment variable in [low, high]; nullopt when unset.
std::optional<int> env_int(const char* name, int low, int high) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  RANKTUNE_CHECK(*end == '\0' && value >= low && value <= high, "environment variable ", name, "='", text,
                 "' is not an integer in [", low, ", ", high, "]");
  return static_cast<int>(value);
}

}  // namespace

std::optional<DistributedEnv> DistributedEnv::from_environment() {
  const std::optional<int> world = env_int("WORLD_SIZE", 1, 1 << 20);
  if (!world) return std::nullopt;
  DistributedEnv env;
  env.world_size = *world;
  env.rank = env_int("RANK", 0, env.world_size - 1).value_or(0);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, env.world_size).value_or(1);
  env.local_rank = env_int("LOCAL_RANK", 0, env.local_world_size - 1).value_or(0);
  if (env.world_size > 1) {
    RANKTUNE_CHECK(std::getenv("RANK") != nullptr, "WORLD_SIZE=", env.world_size, " is set but RANK is not");
    RANKTUNE_CHECK(std::getenv("MASTER_PORT") != nullptr, "WORLD_SIZE=", env.world_size, " is set but MASTER_PORT is not");
  }
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", 1, 65535).value_or(env.master_port);
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent != nullptr && std::string(agent) == "True";  // exactly as torch compares it
  env.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 1 << 20).value_or(0);
  return env;
}

std::shared_ptr<Communicator> join_from_environment(double timeout_seconds, const std::string& device_type) {
  const std::optional<DistributedEnv> env = DistributedEnv::from_environment();
  if (!env || env->world_size == 1) return nullptr;
  return connect(*env, timeout_seconds, device_type);
}

void all_reduce_gradients(Communicator& communicator, const std::vector<at::Tensor>& parameters, int64_t bucket_bytes) {
  if (parameters.empty()) return;  // every worker trains the same parameters
  // Buckets of consecutive parameters on one device, flattened into float32.
  struct Bucket {
    std::vector<at::Tensor> parameters;
    int64_t numel = 0;
  };
  std::vector<Bucket> buckets;
  // Which parameters have a gradient on some worker: one without any stays without (AdamW skips it
  // then, as it would in one process).
  std::vector<double> present(parameters.size(), 0.0);
  for (size_t i = 0; i < parameters.size(); ++i) {
    const at::Tensor& p = parameters[i];
    if (p.grad().defined()) present[i] = 1.0;
    else p.mutable_grad() = at::zeros_like(p);
    const bool fits = !buckets.empty() && (buckets.back().numel + p.numel()) * 4 <= bucket_bytes &&
                      buckets.back().parameters.front().device() == p.device();
    if (!fits) buckets.emplace_back();
    buckets.back().parameters.push_back(p);
    buckets.back().numel += p.numel();
  }
  std::vector<at::Tensor> flat;
  for (const auto& b : buckets) {
    std::vector<at::Tensor> pieces;
    for (const auto& p : b.parameters) pieces.push_back(p.grad().reshape(-1).to(at::kFloat));
    flat.push_back(at::cat(pieces));
  }
  flat.push_back(at::tensor(present, at::TensorOptions().dtype(at::kDouble)));  // the communicator stages it
  communicator.all_reduce_sum(flat);
  const at::Tensor anywhere = flat.back();
  flat.pop_back();
  for (size_t i = 0; i < buckets.size(); ++i) {
    int64_t offset = 0;
    for (const auto& p : buckets[i].parameters) {
      p.mutable_grad().copy_(flat[i].narrow(0, offset, p.numel()).view_as(p));
      offset += p.numel();
    }
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (anywhere.data_ptr<double>()[i] == 0) parameters[i].mutable_grad() = at::Tensor();
  }
}

void broadcast_parameters(Communicator& communicator, const std::vector<at::Tensor>& parameters) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> values;
  for (const auto& p : parameters) values.push_back(p.detach().contiguous().to(at::kFloat));
  communicator.broadcast(values, 0);
  for (size_t i = 0; i < parameters.size(); ++i) parameters[i].detach().copy_(values[i]);
}

std::vector<double> all_reduce_sum(Communicator& communicator, const std::vector<double>& values) {
  std::vector<at::Tensor> t = {at::tensor(values, at::TensorOptions().dtype(at::kDouble))};
  communicator.all_reduce_sum(t);
  const at::Tensor sums = t[0].contiguous();
  return std::vector<double>(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
}

int worker_threads(int64_t configured) {
  if (configured > 0) return static_cast<int>(configured);
  if (std::getenv("RANKTUNE_NUM_THREADS") != nullptr) return 0;
  const std::optional<DistributedEnv> env = DistributedEnv::from_environment();
  if (!env || env->local_world_size <= 1) return 0;
  return std::max(1, hardware_threads() / env->local_world_size);
}

}  // namespace ranktune::train
