// train.precision: bf16 training through the trainer for every method (the first step's loss
// within kFirstLossTolerance of fp32's, fp32 parameters, AdamW state and saved adapter), and
// `auto`'s decision from the GEMM probe, with an injected timer for both outcomes.
//
// The first logged loss is the loss of step 1, computed before any update: fp32 and bf16 runs see
// identical weights and batches, so only bf16's rounding separates them (1e-2 relative; measured
// ≤ 3.2e-5 on the quickstart model).

#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/train/trainer.h"
#include "train/optimizer.h"
#include "train/precision.h"
#include "train/session.h"
#include "train/step.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <filesystem>
#include <unistd.h>

namespace ranktune {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr double kFirstLossTolerance = 1e-2;

const std::string kQuickstart = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart";

train::RunConfig quick_run(const std::string& name, std::vector<std::string> overrides = {}) {
  const std::string dir = (fs::temp_directory_path() / ("ranktune-precision-" + name + "-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::vector<std::string> all = {"model.path=" + kQuickstart + "/model",
                                  "data.train_file=" + kQuickstart + "/data/train.jsonl",
                                  "data.limit=24", "data.validation_size=4", "data.max_length=128",
                                  "train.batch_size=4", "train.max_steps=2", "train.log_every=1",
                                  "train.threads=1", "train.output_dir=" + dir, "eval.max_new_tokens=0"};
  if (std::find(overrides.begin(), overrides.end(), "adapter.method=full") == overrides.end()) {
    all.insert(all.end(), {"adapter.r=4", "adapter.target_modules=all-linear"});
  }
  all.insert(all.end(), overrides.begin(), overrides.end());
  return train::RunConfig::parse("", "test", all);
}

struct MethodCase {
  std::string name;
  std::vector<std::string> overrides;
};

class Bf16Training : public ::testing::TestWithParam<MethodCase> {};

TEST_P(Bf16Training, FirstLossMatchesFp32AndWhatTrainsStaysFp32) {
  const MethodCase& c = GetParam();
  auto run = [&](const std::string& precision) {
    std::vector<std::string> overrides = c.overrides;
    overrides.push_back("train.precision=" + precision);
    const train::RunConfig config = quick_run(c.name + "-" + precision, overrides);
    train::Trainer trainer(config);
    trainer.set_progress_bar(false);
    trainer.setup();
    const train::TrainResult result = trainer.train();
    EXPECT_EQ(result.status, "completed") << c.name << " " << precision;
    for (const auto& p : trainer.model()->parameters()) {
      if (p.requires_grad()) EXPECT_EQ(p.scalar_type(), at::kFloat) << c.name << ": trainable parameters stay fp32";
    }
    const auto summary = nlohmann::json::parse(io::read_file(config.train.output_dir + "/summary.json"));
    EXPECT_EQ(summary["precision"]["chosen"], precision) << c.name;
    const std::string weights = config.adapter.full() ? "model.safetensors" : "adapter_model.safetensors";
    const auto saved = io::SafetensorsFile::open(config.train.output_dir + "/" + weights);
    for (const auto& name : saved.names()) EXPECT_EQ(saved.info(name).dtype, "F32") << c.name << " " << name;
    fs::remove_all(config.train.output_dir);
    return result.first_loss;
  };
  const double fp32 = run("fp32");
  const double bf16 = run("bf16");
  ASSERT_TRUE(std::isfinite(bf16)) << c.name;
  EXPECT_LT(std::abs(bf16 - fp32) / fp32, kFirstLossTolerance) << c.name << ": bf16 " << bf16 << " vs fp32 " << fp32;
  RecordProperty("first_loss_relative_error", c10::str(std::abs(bf16 - fp32) / fp32));
}

INSTANTIATE_TEST_SUITE_P(
    Methods, Bf16Training,
    ::testing::Values(MethodCase{"Lora", {}}, MethodCase{"Dora", {"adapter.method=dora"}},
                      MethodCase{"Rslora", {"adapter.use_rslora=true"}},
                      MethodCase{"Full", {"adapter.method=full"}},
                      MethodCase{"LoraInt8", {"model.quantize=int8"}},
                      MethodCase{"DoraNf4", {"adapter.method=dora", "model.quantize=nf4"}},
                      MethodCase{"LoraCheckpointingPacked", {"train.gradient_checkpointing=true", "data.packing=true"}},
                      MethodCase{"ModulesToSaveTied", {"adapter.modules_to_save=[model.embed_tokens]",
                                                       "adapter.ensure_weight_tying=true"}}),
    [](const ::testing::TestParamInfo<MethodCase>& info) { return info.param.name; });

TEST(Bf16Training, AdamWStateStaysFp32) {
  const train::RunConfig config = quick_run("adamw", {"adapter.method=dora"});
  train::TrainingSession s = train::setup_session(config, {});
  const data::BatchPlan& plan = *s.data.plan;
  std::vector<const data::TokenizedExample*> members;
  const auto batches_of_epoch = plan.epoch_batches(0);
  for (int64_t index : batches_of_epoch[0]) members.push_back(&s.data.train[static_cast<size_t>(index)]);
  const std::vector<data::Batch> batches = {data::collate(members, s.data.pad_token_id)};
  const train::MicroBatchLoss loss_of = [&](const data::Batch& batch) {
    const train::AutocastScope autocast(train::Precision::bf16);
    return s.model->forward(batch.input_ids, batch.attention_mask, batch.labels, nullptr, false).loss;
  };
  const train::StepResult step = train::optimizer_step(*s.optimizer, batches, loss_of, config.train, 0, s.progress);
  ASSERT_TRUE(step.applied);
  int64_t states = 0;
  for (const auto& [key, state] : s.optimizer->adamw().state()) {
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*state);
    EXPECT_EQ(adam.exp_avg().scalar_type(), at::kFloat);
    EXPECT_EQ(adam.exp_avg_sq().scalar_type(), at::kFloat);
    ++states;
  }
  EXPECT_EQ(states, static_cast<int64_t>(s.optimizer->parameters().size()));
  fs::remove_all(config.train.output_dir);
}

// ---- train.precision: auto -----------------------------------------------------------------------

// A timer that reports `fp32` and `bf16` seconds and counts its calls.
struct FakeTimer {
  double fp32, bf16;
  int calls = 0;
  train::GemmTimer timer() {
    return [this](at::ScalarType dtype, const train::ProbeShape&) {
      ++calls;
      return dtype == at::kBFloat16 ? bf16 : fp32;
    };
  }
};

TEST(PrecisionProbe, AutoPicksBf16WhenItsGemmIsMeasurablyFaster) {
  FakeTimer fast{/*fp32=*/6e-3, /*bf16=*/1e-3};
  const train::PrecisionDecision d = train::decide_precision(train::Precision::automatic, fast.timer());
  EXPECT_EQ(d.chosen, train::Precision::bf16);
  EXPECT_TRUE(d.probed);
  EXPECT_EQ(fast.calls, 2);
  EXPECT_NEAR(d.bf16_gflops / d.fp32_gflops, 6.0, 1e-9);
  EXPECT_NEAR(d.fp32_gflops, train::ProbeShape{}.flops() / 6e-3 / 1e9, 1e-6);
  EXPECT_THAT(d.describe(), HasSubstr("train.precision=auto chose bf16"));
  EXPECT_THAT(d.describe(), HasSubstr("6x"));
}

TEST(PrecisionProbe, AutoKeepsFp32WhenBf16IsSlowerOrOnlySlightlyFaster) {
  FakeTimer slow{/*fp32=*/1e-3, /*bf16=*/2.5e-3};  // emulated bf16: 2.5x slower
  EXPECT_EQ(train::decide_precision(train::Precision::automatic, slow.timer()).chosen, train::Precision::fp32);
  FakeTimer marginal{/*fp32=*/1.1e-3, /*bf16=*/1e-3};  // 1.1x: within the probe's noise
  const train::PrecisionDecision d = train::decide_precision(train::Precision::automatic, marginal.timer());
  EXPECT_EQ(d.chosen, train::Precision::fp32);
  EXPECT_THAT(d.describe(), HasSubstr("train.precision=auto chose fp32"));
}

TEST(PrecisionProbe, ExplicitPrecisionsAreNotProbed) {
  FakeTimer timer{1e-3, 1e-3};
  for (const auto p : {train::Precision::fp32, train::Precision::bf16}) {
    const train::PrecisionDecision d = train::decide_precision(p, timer.timer());
    EXPECT_EQ(d.chosen, p);
    EXPECT_FALSE(d.probed);
  }
  EXPECT_EQ(timer.calls, 0);
  EXPECT_THROW(train::AutocastScope(train::Precision::automatic), c10::Error) << "auto is resolved first";
}

TEST(PrecisionProbe, TheRealProbeTimesBothDtypesAndDrawsNoRandomNumbers) {
  const train::ProbeShape shape;
  torch::manual_seed(3);
  const at::Tensor expected = at::randn({4});
  torch::manual_seed(3);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const double seconds = train::time_gemm(dtype, shape);
    EXPECT_GT(seconds, 0.0);
    EXPECT_LT(seconds, 1.0) << "a few ms, not a benchmark";
  }
  // A resumed run restores the generator before train() probes: the probe must not move it.
  EXPECT_TRUE(at::equal(at::randn({4}), expected));
}

TEST(PrecisionProbe, AutoRunRecordsTheProbeInTheSummary) {
  const train::RunConfig config = quick_run("auto", {"train.precision=auto", "train.max_steps=1"});
  train::Trainer trainer(config);
  trainer.set_progress_bar(false);
  trainer.setup();
  ASSERT_EQ(trainer.train().status, "completed");
  const auto summary = nlohmann::json::parse(io::read_file(config.train.output_dir + "/summary.json"));
  const auto& p = summary["precision"];
  EXPECT_EQ(p["requested"], "auto");
  EXPECT_GT(p["probe"]["fp32_gflops"].get<double>(), 0.0);
  EXPECT_GT(p["probe"]["bf16_gflops"].get<double>(), 0.0);
  const bool faster = p["probe"]["bf16_gflops"].get<double>() >= train::kBf16MinSpeedup * p["probe"]["fp32_gflops"].get<double>();
  EXPECT_EQ(p["chosen"], faster ? "bf16" : "fp32");
  fs::remove_all(config.train.output_dir);
}

}  // namespace
}  // namespace ranktune
