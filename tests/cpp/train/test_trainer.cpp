// train/trainer and train/session: the evaluator is injected (the trainer asks it at the right
// moments and prefixes its metrics), a resume restores the checkpoint into the adapter being
// trained, setup decides the split once, and bf16 autocast is switched by a guard.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/train/trainer.h"
#include "train/precision.h"
#include "train/session.h"
#include "test_util.h"

#include <ATen/autocast_mode.h>
#include <gmock/gmock.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace ranktune {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kQuickstart = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart";

// A tiny run on the quickstart model (random weights from a seed) in a fresh directory.
train::RunConfig quick_run(const std::string& name, std::vector<std::string> overrides = {}) {
  const std::string dir = (fs::temp_directory_path() / ("ranktune-trainer-" + name + "-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::vector<std::string> all = {"model.path=" + kQuickstart + "/model",
                                  "data.train_file=" + kQuickstart + "/data/train.jsonl",
                                  "data.limit=40", "data.validation_size=4", "data.max_length=160",
                                  "adapter.r=4", "adapter.target_modules=[q_proj, v_proj]",
                                  "train.batch_size=4", "train.max_steps=2", "train.log_every=1",
                                  "train.threads=1", "train.output_dir=" + dir,
                                  "eval.max_new_tokens=4", "eval.limit=2", "eval.during_training=1"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return train::RunConfig::parse("", "test", all);
}

// Records what it is asked; answers one metric.
class RecordingEvaluator : public train::Evaluator {
 public:
  std::vector<std::pair<train::EvaluationKind, size_t>> calls;
  std::vector<std::string> predictions_paths;
  train::Evaluation evaluate(const train::EvaluationRequest& request) override {
    calls.emplace_back(request.kind, request.questions.size());
    predictions_paths.push_back(request.predictions_path);
    train::Evaluation out;
    out.metrics["answered"] = static_cast<double>(request.questions.size());
    out.summary_json = R"({"answered": 1})";
    return out;
  }
};

TEST(TrainerTest, AsksTheInjectedEvaluatorDuringTrainingAndAtTheEnd) {
  const train::RunConfig config = quick_run("evaluator", {"train.eval_every=1"});
  auto evaluator = std::make_shared<RecordingEvaluator>();
  train::TrainerInputs inputs;
  inputs.evaluator = evaluator;
  std::vector<train::MetricsRow> rows;
  train::Trainer trainer(config, std::move(inputs));
  trainer.set_progress_bar(false);
  trainer.add_callback([&](const train::MetricsRow& row) { rows.push_back(row); });
  trainer.setup();
  ASSERT_EQ(trainer.train().status, "completed");
  using Kind = train::EvaluationKind;
  // Step 1: eval.during_training=1 question; step 2 is the last: the final evaluation only, on
  // eval.limit=2 validation questions, with predictions.jsonl.
  ASSERT_EQ(evaluator->calls.size(), 2u);
  EXPECT_EQ(evaluator->calls[0], std::make_pair(Kind::during_training, size_t{1}));
  EXPECT_EQ(evaluator->calls[1], std::make_pair(Kind::final_run, size_t{2}));
  EXPECT_EQ(evaluator->predictions_paths[1], config.train.output_dir + "/predictions.jsonl");
  EXPECT_EQ(rows.back().values.at("eval_answered"), 2.0);
  EXPECT_TRUE(rows.back().values.count("eval_loss"));
  EXPECT_THAT(io::read_file(config.train.output_dir + "/summary.json"), HasSubstr("\"answered\": 1"));
  EXPECT_EQ(trainer.evaluate().at("eval_answered"), 2.0);
  EXPECT_EQ(evaluator->calls.back().first, Kind::on_request);
  fs::remove_all(config.train.output_dir);
}

TEST(TrainerTest, WithoutAnEvaluatorOnlyTheValidationLossIsMeasured) {
  const train::RunConfig config = quick_run("no-evaluator");
  train::Trainer trainer(config);
  trainer.set_progress_bar(false);
  trainer.setup();
  ASSERT_EQ(trainer.train().status, "completed");
  const auto metrics = trainer.evaluate();
  EXPECT_EQ(metrics.size(), 1u);
  EXPECT_TRUE(metrics.count("eval_loss"));
  fs::remove_all(config.train.output_dir);
}

TEST(TrainerTest, ResumeRestoresTheCheckpointIntoTheAdapterBeingTrained) {
  const train::RunConfig first = quick_run("resume", {"train.save_every=2", "eval.max_new_tokens=0"});
  {
    train::Trainer trainer(first);
    trainer.set_progress_bar(false);
    trainer.setup();
    ASSERT_EQ(trainer.train().steps, 2);
  }
  train::Trainer resumed(quick_run("resume-2", {"train.output_dir=" + first.train.output_dir, "train.max_steps=3",
                                                "train.resume_from=latest", "eval.max_new_tokens=0"}));
  resumed.setup();
  // One adapter, holding the checkpoint's weights: nothing was attached beside it to copy from.
  EXPECT_EQ(resumed.peft_model()->adapter_names(), std::vector<std::string>{"default"});
  const auto saved = io::SafetensorsFile::open(first.train.output_dir + "/checkpoint-2/adapter_model.safetensors");
  const std::string key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
  const auto params = resumed.model()->named_parameters();
  EXPECT_TRUE(params["model.layers.0.self_attn.q_proj.lora_B.default.weight"].equal(saved.tensor(key)));
  fs::remove_all(first.train.output_dir);
}

TEST(TrainerTest, RestoringAnotherAdapterIsRefusedNamingTheFile) {
  const train::RunConfig config = quick_run("restore", {"eval.max_new_tokens=0"});
  train::Trainer trainer(config);
  trainer.set_progress_bar(false);
  trainer.setup();
  ASSERT_EQ(trainer.train().status, "completed");
  auto other = train::load_run_model(config.model);
  peft::PeftModel wider(other, peft::LoraConfig().r(8).target_modules({"q_proj", "v_proj"}));
  const std::string message = testing::error_of([&] {
    peft::restore_adapter_weights(wider.model(), wider.config("default"), "default", config.train.output_dir);
  });
  EXPECT_THAT(message, HasSubstr("adapter_model.safetensors"));
  EXPECT_THAT(message, HasSubstr("wrong shape"));
  fs::remove_all(config.train.output_dir);
}

TEST(SessionTest, SetupDecidesTheSplitOnceForTrainingAndForEvaluation) {
  const train::RunConfig config = quick_run("split");
  const train::RunExamples examples = train::setup_examples(config, {});
  EXPECT_EQ(examples.train.size(), 36u);
  EXPECT_EQ(examples.validation.size(), 4u);
  ASSERT_EQ(examples.test.size(), 2u);  // eval.limit of the validation examples
  const auto questions = train::evaluation_questions(config);
  ASSERT_EQ(questions.size(), 2u);
  EXPECT_EQ(questions[0].question, examples.test[0].question);
  EXPECT_EQ(questions[1].question, examples.test[1].question);
  // In-memory examples without validation ones are split the same way, with a clear error when
  // data.validation_size would take them all.
  train::TrainerInputs inputs;
  inputs.train_examples = std::vector<data::Example>(examples.validation.begin(), examples.validation.end());
  EXPECT_THAT(testing::error_of([&] { train::setup_examples(config, inputs); }),
              HasSubstr("data.validation_size=4 would hold out all 4 training examples"));
}

TEST(PrecisionTest, AutocastScopeRestoresThePreviousStateAlsoOnAnException) {
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  try {
    const train::AutocastScope scope(train::Precision::bf16);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(at::autocast::get_autocast_cpu_dtype(), at::kBFloat16);
    throw std::runtime_error("forward failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  {
    const train::AutocastScope scope(train::Precision::fp32);
    EXPECT_FALSE(at::autocast::is_cpu_enabled());
  }
}

}  // namespace
}  // namespace ranktune
