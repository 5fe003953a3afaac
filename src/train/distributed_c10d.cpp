// The Communicator on torch.distributed's c10d, as torchrun's workers use it: a TCPStore for the
// rendezvous (hosted by rank 0, or by torchrun's agent), ProcessGroupGloo for CPU tensors and,
// in a CUDA build of LibTorch, ProcessGroupNCCL for CUDA devices. The only file that includes c10d
// (CMakeLists.txt defines USE_C10D_GLOO, and USE_C10D_NCCL for CUDA builds, for it alone).

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef RANKTUNE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace ranktune::train {
namespace {

using Milliseconds = std::chrono::milliseconds;

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

// Gloo's transport device: GLOO_SOCKET_IFNAME as torch reads it; a loopback master stays on
// loopback (one machine); else the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface != nullptr && *interface != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  }
  if (master_addr == "localhost" || master_addr.rfind("127.", 0) == 0) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

class C10dCommunicator final : public Communicator {
 public:
  C10dCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> group, std::string backend, at::Device device,
                   Milliseconds timeout)
      : group_(std::move(group)), backend_(std::move(backend)), device_(device), timeout_(timeout) {}

  int rank() const override { return group_->getRank(); }
  int world_size() const override { return group_->getSize(); }
  std::string backend() const override { return backend_; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    on_device(tensors, [&](std::vector<at::Tensor>& staged) {
      // Every bucket is started, then all are waited for: the transfers overlap.
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& t : staged) {
        std::vector<at::Tensor> one = {t};
        works.push_back(run("all_reduce", [&] { return group_->allreduce(one); }));
      }
      for (auto& w : works) wait(w, "all_reduce");
    });
  }

  void broadcast(std::vector<at::Tensor>& tensors, int root) override {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    on_device(tensors, [&](std::vector<at::Tensor>& staged) {
      for (auto& t : staged) {
        std::vector<at::Tensor> one = {t};
        wait(run("broadcast", [&] { return group_->broadcast(one, options); }), "broadcast");
      }
    });
  }

  void barrier() override { wait(run("barrier", [&] { return group_->barrier(); }), "barrier"); }

  std::vector<std::string> all_gather(const std::string& bytes) override {
    const int world = world_size();
    // The lengths first, then every worker's bytes padded to the longest (on the backend's device).
    const auto cpu_long = at::TensorOptions().dtype(at::kLong).device(device_);
    std::vector<at::Tensor> length = {at::full({1}, static_cast<int64_t>(bytes.size()), cpu_long)};
    std::vector<std::vector<at::Tensor>> lengths(1);
    for (int r = 0; r < world; ++r) lengths[0].push_back(at::zeros({1}, cpu_long));
    wait(run("all_gather", [&] { return group_->allgather(lengths, length); }), "all_gather");
    int64_t longest = 1;
    for (const auto& l : lengths[0]) longest = std::max(longest, l.item<int64_t>());
    const auto cpu_bytes = at::TensorOptions().dtype(at::kByte).device(device_);
    at::Tensor host = at::zeros({longest}, at::TensorOptions().dtype(at::kByte));
    std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
    std::vector<at::Tensor> mine = {host.to(device_)};
    std::vector<std::vector<at::Tensor>> all(1);
    for (int r = 0; r < world; ++r) all[0].push_back(at::zeros({longest}, cpu_bytes));
    wait(run("all_gather", [&] { return group_->allgather(all, mine); }), "all_gather");
    std::vector<std::string> out;
    for (int r = 0; r < world; ++r) {
      const auto n = static_cast<size_t>(lengths[0][static_cast<size_t>(r)].item<int64_t>());
      const at::Tensor received = all[0][static_cast<size_t>(r)].to(at::kCPU);  // bytes to host memory
      out.emplace_back(static_cast<const char*>(received.data_ptr()), n);
    }
    return out;
  }

 private:
  // The backend reduces tensors on its own device (NCCL: the worker's GPU); others go there and back.
  template <typename Op>
  void on_device(std::vector<at::Tensor>& tensors, Op op) {
    std::vector<at::Tensor> staged;
    for (const auto& t : tensors) staged.push_back(t.device() == device_ ? t : t.to(device_));
    op(staged);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!staged[i].is_same(tensors[i])) tensors[i].copy_(staged[i]);
    }
  }

  template <typename Start>
  c10::intrusive_ptr<c10d::Work> run(const char* what, Start start) {
    try {
      return start();
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    try {
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  Error failure(const char* what, const std::exception& e) const {
    return Error(c10::str("data parallel: ", what, " failed on rank ", rank(), " of ", world_size(), " (", backend_,
                          "): ", message_of(e), " — another worker died or did not answer within "
                          "train.distributed_timeout=", timeout_.count() / 1000.0, " s"));
  }

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::string backend_;
  at::Device device_;
  Milliseconds timeout_;
};

}  // namespace

std::shared_ptr<Communicator> connect(const DistributedEnv& env, double timeout_seconds, const std::string& device_type) {
  RANKTUNE_CHECK(timeout_seconds > 0, "train.distributed_timeout must be positive, got ", timeout_seconds);
  const Milliseconds timeout(static_cast<int64_t>(timeout_seconds * 1000.0));
  const std::string where = c10::str(env.master_addr, ":", env.master_port);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = !env.agent_store && env.rank == 0;
    if (!env.agent_store) options.numWorkers = static_cast<size_t>(env.world_size);
    options.waitWorkers = !env.agent_store;  // each worker checks in; rank 0 waits (within the timeout) for all
    options.timeout = timeout;
    options.multiTenant = true;
    c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    if (env.agent_store) tcp = c10::make_intrusive<c10d::PrefixStore>(c10::str("/worker/attempt_", env.restart_count), tcp);
    store = c10::make_intrusive<c10d::PrefixStore>("ranktune", tcp);  // apart from a script's own groups
  } catch (const std::exception& e) {
    throw Error(c10::str("data parallel: rank ", env.rank, " of ", env.world_size, " could not meet the others at ",
                         where, " (MASTER_ADDR:MASTER_PORT) within train.distributed_timeout=", timeout_seconds,
                         " s: ", message_of(e)));
  }
  try {
    if (device_type == "cuda") {
#ifdef RANKTUNE_WITH_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      return std::make_shared<C10dCommunicator>(
          c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options), "nccl",
          at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank)), timeout);
#else
      throw Error("model.device is cuda but this LibTorch has no CUDA (NCCL) support");
#endif
    }
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(env.master_addr));
    options->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
    log_debug(c10::str("data parallel: rank ", env.rank, " of ", env.world_size, " joined (gloo, ", where, ")"));
    return std::make_shared<C10dCommunicator>(group, "gloo", at::Device(at::kCPU), timeout);  // Gloo: host memory
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(c10::str("data parallel: rank ", env.rank, " of ", env.world_size, " could not form the group at ",
                         where, " within train.distributed_timeout=", timeout_seconds, " s: ", message_of(e)));
  }
}

}  // namespace ranktune::train
