// train/distributed: torchrun's variables, and the collectives on real Gloo groups inside one
// process (one thread per worker, a TCPStore on loopback): two workers, each with its share of a
// batch, get the gradients of the whole batch on one worker — with uneven shares and an empty one.

#include "ranktune/core/error.h"
#include "ranktune/data/batching.h"
#include "ranktune/train/distributed.h"
#include "train/step.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <thread>

using namespace ranktune;

namespace {

// Sets the variables for the scope of a test and clears them after.
using Vars = std::vector<std::pair<const char*, const char*>>;

class Environment {
 public:
  explicit Environment(const Vars& values) {
    for (const char* name : kNames) ::unsetenv(name);
    for (const auto& [name, value] : values) ::setenv(name, value, 1);
  }
  ~Environment() {
    for (const char* name : kNames) ::unsetenv(name);
  }

 private:
  static constexpr const char* kNames[] = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                           "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"};
};

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs `work(communicator)` on `world` workers, one thread each, joined over loopback.
void on_workers(int world, const std::function<void(train::Communicator&)>& work) {
  const int port = free_port();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        train::DistributedEnv env;
        env.rank = env.local_rank = rank;
        env.world_size = env.local_world_size = world;
        env.master_port = port;
        const auto communicator = train::connect(env, 30);
        work(*communicator);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(rank)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < world; ++rank) EXPECT_EQ(errors[static_cast<size_t>(rank)], "") << "rank " << rank;
}

TEST(DistributedEnvTest, ReadsTorchrunsVariables) {
  {
    Environment env(Vars{});
    EXPECT_FALSE(train::DistributedEnv::from_environment().has_value());
    EXPECT_EQ(train::join_from_environment(1), nullptr);
  }
  {
    Environment env(Vars{{"RANK", "3"}, {"LOCAL_RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"},
                     {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                     {"TORCHELASTIC_RESTART_COUNT", "2"}});
    const auto e = train::DistributedEnv::from_environment();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->rank, 3);
    EXPECT_EQ(e->local_rank, 1);
    EXPECT_EQ(e->world_size, 4);
    EXPECT_EQ(e->local_world_size, 2);
    EXPECT_EQ(e->master_addr, "node0");
    EXPECT_EQ(e->master_port, 29400);
    EXPECT_TRUE(e->agent_store);
    EXPECT_EQ(e->restart_count, 2);
  }
  {
    Environment env(Vars{{"WORLD_SIZE", "1"}});
    EXPECT_EQ(train::join_from_environment(1), nullptr);  // one worker: the one-process path
  }
}

TEST(DistributedEnvTest, BadVariablesAreNamed) {
  {
    Environment env(Vars{{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_PORT", "29500"}});
    EXPECT_THAT([] { train::DistributedEnv::from_environment(); },
                ::testing::ThrowsMessage<Error>(::testing::HasSubstr("RANK='2' is not an integer in [0, 1]")));
  }
  {
    Environment env(Vars{{"WORLD_SIZE", "2"}, {"RANK", "1"}});
    EXPECT_THAT([] { train::DistributedEnv::from_environment(); },
                ::testing::ThrowsMessage<Error>(::testing::HasSubstr("MASTER_PORT is not")));
  }
  {
    Environment env(Vars{{"WORLD_SIZE", "two"}});
    EXPECT_THAT([] { train::DistributedEnv::from_environment(); },
                ::testing::ThrowsMessage<Error>(::testing::HasSubstr("WORLD_SIZE='two'")));
  }
}

TEST(DistributedEnvTest, WorkerThreadsShareTheCores) {
  Environment env(Vars{{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "1"}, {"LOCAL_WORLD_SIZE", "2"}});
  const char* given = std::getenv("RANKTUNE_NUM_THREADS");  // ctest sets it
  const std::string saved = given != nullptr ? given : "";
  ::unsetenv("RANKTUNE_NUM_THREADS");
  EXPECT_EQ(train::worker_threads(3), 3);
  EXPECT_EQ(train::worker_threads(0), std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2));
  ::setenv("RANKTUNE_NUM_THREADS", "1", 1);
  EXPECT_EQ(train::worker_threads(0), 0);  // the variable wins (configure_threads reads it)
  if (given != nullptr) ::setenv("RANKTUNE_NUM_THREADS", saved.c_str(), 1);
  else ::unsetenv("RANKTUNE_NUM_THREADS");
}

TEST(CommunicatorTest, CollectivesOnTwoGlooWorkers) {
  on_workers(2, [](train::Communicator& c) {
    EXPECT_EQ(c.world_size(), 2);
    EXPECT_EQ(c.backend(), "gloo");
    const std::vector<double> sums = train::all_reduce_sum(c, {1.0 + c.rank(), 0.5});
    EXPECT_EQ(sums, (std::vector<double>{3.0, 1.0}));
    std::vector<at::Tensor> values = {at::full({3}, static_cast<double>(c.rank() + 7))};
    c.broadcast(values, 0);
    EXPECT_TRUE(values[0].equal(at::full({3}, 7.0)));
    const auto gathered = c.all_gather(c.rank() == 0 ? std::string("zero") : std::string("one\n\0x", 6));
    EXPECT_EQ(gathered, (std::vector<std::string>{"zero", std::string("one\n\0x", 6)}));
    c.barrier();
  });
}

// A linear model's loss over a batch of rows: labels of -100 are not counted, so a batch's
// loss_tokens is its rows with a label.
struct TinyRegression {
  at::Tensor weight = at::arange(6, at::kDouble).reshape({2, 3}).div(10).requires_grad_(true);
  at::Tensor bias = at::zeros({2}, at::kDouble).requires_grad_(true);  // stays without a gradient
  train::MicroBatchLoss loss() {
    return [this](const data::Batch& b) {
      const at::Tensor x = b.input_ids.to(at::kDouble);
      return at::matmul(x, weight.t()).pow(2).sum(-1).mean();  // mean over the batch's rows
    };
  }
};

data::Batch rows(std::vector<std::vector<int64_t>> values) {
  data::Batch b;
  if (values.empty()) return b;
  std::vector<at::Tensor> r;
  for (const auto& v : values) r.push_back(at::tensor(v, at::kLong));
  b.input_ids = at::stack(r);
  b.loss_tokens = static_cast<int64_t>(values.size());
  return b;
}

TEST(CommunicatorTest, TwoSharesGiveTheGradientOfTheWholeBatch) {
  // Two micro-batches of one global step: 3 rows split 2 + 1, then 1 row split 1 + none.
  const std::vector<std::vector<int64_t>> a = {{1, 2, 3}, {0, 1, 0}, {4, 0, 1}}, b = {{2, 2, 2}};
  TinyRegression whole;
  const double loss = train::accumulate_gradients({rows(a), rows(b)}, whole.loss());
  on_workers(2, [&](train::Communicator& c) {
    TinyRegression mine;
    const std::vector<data::Batch> shares = c.rank() == 0 ? std::vector<data::Batch>{rows({a[0], a[1]}), rows(b)}
                                                          : std::vector<data::Batch>{rows({a[2]}), rows({})};
    double reduce_seconds = -1;
    const double global = train::accumulate_gradients(shares, mine.loss(), {mine.weight, mine.bias}, c, &reduce_seconds);
    EXPECT_NEAR(global, loss, 1e-12);
    EXPECT_GE(reduce_seconds, 0);
    // float32 buckets: the gradient to float32 precision.
    EXPECT_TRUE(at::allclose(mine.weight.grad(), whole.weight.grad(), 1e-6, 1e-6)) << mine.weight.grad() << whole.weight.grad();
    EXPECT_FALSE(mine.bias.grad().defined());  // no worker had one: AdamW skips it, as in one process
  });
}

TEST(CommunicatorTest, AMissingPeerIsAnErrorWithinTheTimeout) {
  train::DistributedEnv env;
  env.rank = 1;
  env.world_size = 2;
  env.master_port = free_port();  // nobody listens
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT([&] { train::connect(env, 1.0); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("could not meet the others at 127.0.0.1:")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
