// train/grpo: the chunked per-token log-probs (value and gradient against full log-softmax), the
// rollout layout, the built-in rewards, the grpo: recipe keys, and GrpoTrainer runs on the
// quickstart model: sane metrics, custom rewards, errors before anything is written, and a stopped
// and resumed run ending with the same adapter as an uninterrupted one.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/prompt/template.h"
#include "ranktune/train/grpo.h"
#include "ranktune/train/metrics.h"
#include "train/grpo_rollout.h"
#include "train/token_logprobs.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace ranktune {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::max_abs_diff;
using testing::thrown_error;

// ---- log-probs -------------------------------------------------------------------------------------------

TEST(GrpoLogProbsTest, ChunkedLogProbsMatchTheFullLogSoftmaxInValueAndGradient) {
  torch::manual_seed(3);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor hidden = at::randn({10, 8}, f64).requires_grad_(true);
  const at::Tensor weight = at::randn({13, 8}, f64).requires_grad_(true);
  const at::Tensor targets = at::randint(0, 13, {10}, at::kLong);
  const at::Tensor upstream = at::randn({10}, f64);
  const double temperature = 0.7;

  const at::Tensor full = at::log_softmax(hidden.mm(weight.t()) / temperature, 1);
  const at::Tensor expected = full.gather(1, targets.unsqueeze(1)).squeeze(1);
  const at::Tensor expected_entropy = -(full.exp() * full).sum(1);
  (expected * upstream).sum().backward();
  const std::vector<at::Tensor> expected_grads = {hidden.grad().clone(), weight.grad().clone()};
  hidden.mutable_grad().zero_();
  weight.mutable_grad().zero_();

  // Chunks of 3 rows: the last chunk is short.
  const train::TokenLogProbs got = train::chunked_token_log_probs(hidden, weight, targets, temperature, 3);
  EXPECT_LT(max_abs_diff(got.logps.to(at::kDouble), expected), 1e-5);
  EXPECT_LT(max_abs_diff(got.entropy.to(at::kDouble), expected_entropy), 1e-5);
  EXPECT_FALSE(got.entropy.requires_grad());
  (got.logps.to(at::kDouble) * upstream).sum().backward();
  EXPECT_LT(max_abs_diff(hidden.grad(), expected_grads[0]), 1e-5);
  EXPECT_LT(max_abs_diff(weight.grad(), expected_grads[1]), 1e-5);
}

TEST(GrpoLogProbsTest, CompletionLogProbsAreThoseOfTheModelsLogitsForTheCompletionTokens) {
  torch::manual_seed(0);
  auto lm = model::create_causal_lm(
      model::ModelConfig::from_json(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 40, "max_position_embeddings": 32})", "tiny/config.json"),
      torch::kFloat64);
  lm->eval();
  // Row 1's prompt is left-padded; its completion is one token shorter (right padding).
  const at::Tensor ids = at::tensor({5, 6, 7, 8, 9, 10, 0, 0, 11, 12, 13, 14}, at::kLong).view({2, 6});
  const at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}, at::kLong).view({2, 6});
  const train::TokenLogProbs got = train::completion_log_probs(*lm, ids, mask, 3, 1.0, 2);
  const at::Tensor logits = lm->forward(ids, mask).logits;
  const at::Tensor log_probs = at::log_softmax(logits.narrow(1, 2, 3), 2);
  const at::Tensor expected = log_probs.gather(2, ids.narrow(1, 3, 3).unsqueeze(2)).squeeze(2);
  EXPECT_EQ(got.logps.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_LT(max_abs_diff(got.logps.to(at::kDouble), expected), 1e-5);
}

// ---- rollouts and rewards ----------------------------------------------------------------------------------

TEST(GrpoRolloutTest, PromptsAreLeftPaddedAndCompletionsRightPaddedWithTheirMask) {
  const train::Rollout r = train::layout_rollout({{1, 2, 3}, {4}}, {{5, 6}, {7, 8, 9}}, 0);
  EXPECT_TRUE(r.input_ids.equal(at::tensor({1, 2, 3, 5, 6, 0, 0, 0, 4, 7, 8, 9}, at::kLong).view({2, 6})));
  EXPECT_TRUE(r.attention_mask.equal(at::tensor({1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1}, at::kLong).view({2, 6})));
  EXPECT_TRUE(r.completion_mask.equal(at::tensor({1.f, 1.f, 0.f, 1.f, 1.f, 1.f}).view({2, 3})));
  EXPECT_EQ(r.completion_length, 3);
  EXPECT_EQ(r.prompt_tokens, 4);
  EXPECT_THAT(testing::error_of([] { train::layout_rollout({{1}}, {}, 0); }), HasSubstr("one completion per prompt"));
}

TEST(GrpoRolloutTest, ARoundIsSampledInOneCallSplitIntoMicroBatchesWithToolTokensMasked) {
  torch::manual_seed(0);
  auto lm = model::create_causal_lm(
      model::ModelConfig::from_json(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 40, "max_position_embeddings": 64})", "tiny/config.json"));
  // A "tool" that answers token 7 with 30, 31 (as the calculator answers "<<2+2=" with "4>>").
  auto options = model::GenerationOptions().max_new_tokens(6).temperature(1.0).seed(11).inject(
      [](const std::vector<int64_t>& ids) { return ids.back() == 7 ? std::vector<int64_t>{30, 31} : std::vector<int64_t>{}; });
  const std::vector<std::vector<int64_t>> prompts = {{1, 7}, {2, 3, 4}, {5}, {6, 7, 8}};
  const std::vector<train::Rollout> rollouts = train::sample_rollouts(*lm, prompts, 3, 2, options);

  // What one generate call of the whole round samples, row for row.
  model::GenerationOptions group = options;
  group.num_return_sequences(3);
  const std::vector<model::Generation> expected = model::generate(*lm, prompts, group);
  ASSERT_EQ(rollouts.size(), 2u);
  int64_t tool_tokens = 0;
  for (size_t m = 0; m < 2; ++m) {
    const train::Rollout& r = rollouts[m];
    ASSERT_EQ(r.completions.size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      const model::Generation& g = expected[m * 6 + i];
      EXPECT_EQ(r.completions[i], g.tokens);
      // Rows are their group's prompt followed by the completion; only sampled tokens carry loss.
      const std::vector<int64_t>& prompt = prompts[m * 2 + i / 3];
      const int64_t width = r.input_ids.size(1), prompt_width = width - r.completion_length;
      EXPECT_EQ(r.input_ids[static_cast<int64_t>(i)][prompt_width - 1].item<int64_t>(), prompt.back());
      for (size_t j = 0; j < g.tokens.size(); ++j) {
        const float loss = r.completion_mask[static_cast<int64_t>(i)][static_cast<int64_t>(j)].item<float>();
        EXPECT_EQ(loss, g.from_tool[j] ? 0.f : 1.f) << "row " << i << " token " << j;
        tool_tokens += g.from_tool[j];
      }
    }
  }
  EXPECT_GT(tool_tokens, 0) << "no row called the tool: the mask was not exercised";
  EXPECT_THAT(testing::error_of([&] { train::sample_rollouts(*lm, prompts, 3, 3, options); }),
              HasSubstr("does not split into micro-batches of 3"));
}

TEST(GrpoRewardsTest, BuiltInRewardsScoreAccuracyFormatAndLength) {
  auto tmpl = std::make_shared<const prompt::PromptTemplate>(prompt::PromptTemplate::load("gsm8k-cot"));
  data::Example e;
  e.question = "What is 2 + 3?";
  e.answer = "5";
  train::RewardBatch batch;
  batch.completions = {"2 + 3 = 5\n#### 5", "The answer is 5.", "#### 6"};
  batch.prompts.assign(3, "Q");
  batch.examples.assign(3, &e);
  batch.completion_lengths = {8, 5, 2};
  batch.max_completion_length = 10;
  auto scores = [&](const std::string& name) {
    std::vector<double> out;
    for (const auto& s : train::builtin_reward(name, tmpl).score(batch)) out.push_back(s.value());
    return out;
  };
  EXPECT_EQ(scores("accuracy"), (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(scores("accuracy_flexible"), (std::vector<double>{1, 1, 0}));
  EXPECT_EQ(scores("format"), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(scores("length"), (std::vector<double>{-0.8, -0.5, -0.2}));
  const Error error = thrown_error([&] { train::builtin_reward("accuracy_strict", tmpl); });
  EXPECT_EQ(error.context().key, "grpo.reward_funcs");
  EXPECT_THAT(error.message(), HasSubstr("accuracy, accuracy_flexible, format, length"));
}

// ---- the recipe keys ---------------------------------------------------------------------------------------------

train::RunConfig grpo_recipe(const std::vector<std::string>& overrides) {
  std::vector<std::string> all = {"model.path=m", "data.train_file=t.jsonl"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return train::RunConfig::parse("", "test", all);
}

TEST(GrpoConfigTest, TheGrpoSectionHasTrlsDefaultsAndNames) {
  const train::RunConfig c = train::RunConfig::parse("model: {path: m}\ndata: {train_file: t}\n"
                                                     "grpo: {num_generations: 4, loss_type: dr_grpo, reward_weights: [1, 0.5]}\n",
                                                     "recipe.yaml");
  EXPECT_EQ(c.grpo.num_generations, 4);
  EXPECT_EQ(c.grpo.loss_type, "dr_grpo");
  EXPECT_EQ(c.grpo.reward_weights, (std::vector<double>{1, 0.5}));
  EXPECT_EQ(c.grpo.reward_funcs, (std::vector<std::string>{"accuracy", "format"}));
  EXPECT_EQ(c.grpo.scale_rewards, "group");
  EXPECT_DOUBLE_EQ(c.grpo.epsilon_high, 0.2);
  EXPECT_DOUBLE_EQ(c.grpo.beta, 0.0);
  EXPECT_THAT(train::RunConfig::documentation(), HasSubstr("`grpo.num_iterations`"));
  EXPECT_THAT(c.to_yaml(), HasSubstr("loss_type: dr_grpo"));
}

TEST(GrpoConfigTest, BadGrpoValuesAreRefusedNamingTheKey) {
  EXPECT_EQ(thrown_error([] { grpo_recipe({"grpo.num_generations=1"}); }).context().key, "grpo.num_generations");
  const Error loss = thrown_error([] { grpo_recipe({"grpo.loss_type=ppo"}); });
  EXPECT_EQ(loss.context().key, "grpo.loss_type");
  EXPECT_THAT(loss.message(), HasSubstr("grpo, bnpo, dr_grpo, dapo"));
  EXPECT_EQ(thrown_error([] { grpo_recipe({"grpo.temperature=0"}); }).context().key, "grpo.temperature");
  EXPECT_EQ(thrown_error([] { grpo_recipe({"grpo.reward_weights=[1, x]"}); }).context().key, "grpo.reward_weights");
  EXPECT_EQ(thrown_error([] { grpo_recipe({"grpo.scale_rewards=std"}); }).context().key, "grpo.scale_rewards");
  EXPECT_EQ(thrown_error([] { grpo_recipe({"grpo.tempreature=1"}); }).context().key, "grpo.tempreature");
}

// ---- the trainer ------------------------------------------------------------------------------------------------

const std::string kQuickstart = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart";

train::RunConfig quick_grpo(const std::string& name, std::vector<std::string> overrides = {}) {
  const std::string dir = (fs::temp_directory_path() / ("ranktune-grpo-" + name + "-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::vector<std::string> all = {"model.path=" + kQuickstart + "/model",
                                  "data.train_file=" + kQuickstart + "/data/train.jsonl",
                                  "data.limit=12", "data.validation_size=2",
                                  "adapter.r=4", "adapter.target_modules=[q_proj, v_proj]",
                                  "grpo.num_generations=2", "grpo.max_completion_length=6",
                                  "train.batch_size=4", "train.max_steps=2", "train.log_every=1", "train.lr=1e-2",
                                  "train.threads=1", "train.output_dir=" + dir, "eval.max_new_tokens=0"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return train::RunConfig::parse("", "test", all);
}

// A reward that varies within groups (a random model's completions all run to the length limit,
// so their lengths do not): a checksum of the text; nullopt for every fourth completion.
train::RewardFunction checksum_reward() {
  return {"checksum", [](const train::RewardBatch& b) {
            train::RewardScores out;
            for (size_t i = 0; i < b.completions.size(); ++i) {
              int64_t sum = 0;
              for (unsigned char c : b.completions[i]) sum += c;
              out.push_back(i % 4 == 3 ? std::nullopt : std::optional<double>(static_cast<double>(sum % 7)));
            }
            return out;
          }};
}

TEST(GrpoTrainerTest, ARunLogsSaneRowsWithEveryRewardAndWritesItsFiles) {
  const train::RunConfig config = quick_grpo("run", {"grpo.reward_funcs=[format, length]",
                                                     "grpo.reward_weights=[1, 0.5, 0.1]", "grpo.beta=0.05"});
  train::GrpoTrainer trainer(config, {}, {checksum_reward()});
  trainer.set_progress_bar(false);
  trainer.setup();
  const train::GrpoResult result = trainer.train();
  EXPECT_EQ(result.status, "completed");
  EXPECT_EQ(result.steps, 2);
  const std::string dir = config.train.output_dir;
  const auto rows = train::MetricsLog::read(dir + "/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);  // one per step; no evaluation row (no evaluator, eval.max_new_tokens=0)
  for (const auto& row : rows) {
    for (const char* key : {"reward", "reward_std", "rewards/format/mean", "rewards/length/mean", "rewards/checksum/mean",
                            "completions/mean_length", "completions/min_length", "completions/max_length",
                            "frac_reward_zero_std", "entropy", "kl", "loss", "clip_ratio/region_mean",
                            "rollout_seconds", "train_seconds", "train_tokens_per_second"}) {
      ASSERT_TRUE(row.values.count(key)) << key;
    }
    EXPECT_TRUE(std::isfinite(row.values.at("loss")));
    EXPECT_GE(row.values.at("completions/min_length"), 1);
    EXPECT_LE(row.values.at("completions/max_length"), 6);
    EXPECT_GE(row.values.at("frac_reward_zero_std"), 0);
    EXPECT_LE(row.values.at("frac_reward_zero_std"), 1);
    EXPECT_LE(row.values.at("rewards/length/mean"), 0);
    EXPECT_GT(row.values.at("entropy"), 0);
    EXPECT_GE(row.values.at("kl"), 0);
  }
  EXPECT_TRUE(fs::exists(dir + "/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/training-curve.svg"));
  const std::string summary = io::read_file(dir + "/summary.json");
  EXPECT_THAT(summary, HasSubstr("\"reward_funcs\": [\n    \"format\",\n    \"length\",\n    \"checksum\""));
  fs::remove_all(dir);
}

TEST(GrpoTrainerTest, BadRewardSettingsAreRefusedBeforeAnythingIsWritten) {
  const train::RunConfig weights = quick_grpo("weights", {"grpo.reward_weights=[1, 2, 3]"});
  const Error error = thrown_error([&] {
    train::GrpoTrainer trainer(weights);
    trainer.setup();
  });
  EXPECT_EQ(error.context().key, "grpo.reward_weights");
  EXPECT_THAT(error.message(), HasSubstr("3 weights for 2 reward functions"));
  EXPECT_FALSE(fs::exists(weights.train.output_dir));

  const Error split = thrown_error([&] {
    train::GrpoTrainer trainer(quick_grpo("split", {"grpo.num_generations=3"}));
    trainer.setup();
  });
  EXPECT_EQ(split.context().key, "train.batch_size");
  EXPECT_THAT(split.message(), HasSubstr("multiple of grpo.num_generations (3)"));

  const Error iterations = thrown_error([&] {
    train::GrpoTrainer trainer(quick_grpo("iterations", {"grpo.num_iterations=2", "train.max_steps=3"}));
    trainer.setup();
  });
  EXPECT_EQ(iterations.context().key, "train.max_steps");
}

// Stopped after the first batch of rollouts (μ = 2 steps, old log-probs and a reference pass),
// resumed, and compared with a run that went straight through.
TEST(GrpoTrainerTest, AStoppedAndResumedRunEndsWithTheAdapterOfAnUninterruptedOne) {
  const std::vector<std::string> common = {"grpo.num_iterations=2", "grpo.beta=0.1", "train.max_steps=4",
                                           "grpo.reward_funcs=[length]", "grpo.temperature=1.5"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  const train::RunConfig straight = quick_grpo("straight", with({}));
  {
    train::GrpoTrainer trainer(straight, {}, {checksum_reward()});
    trainer.set_progress_bar(false);
    trainer.setup();
    ASSERT_EQ(trainer.train().status, "completed");
  }
  const train::RunConfig stopped = quick_grpo("stopped", with({}));
  {
    train::GrpoTrainer trainer(stopped, {}, {checksum_reward()});
    trainer.set_progress_bar(false);
    trainer.add_callback([&trainer](const train::MetricsRow& row) {
      if (row.step == 1) trainer.request_stop();  // honoured at the end of the batch of rollouts
    });
    trainer.setup();
    const train::GrpoResult result = trainer.train();
    ASSERT_EQ(result.status, "interrupted");
    ASSERT_EQ(result.steps, 2);
  }
  {
    train::GrpoTrainer trainer(quick_grpo("resumed", with({"train.output_dir=" + stopped.train.output_dir,
                                                            "train.resume_from=latest"})),
                               {}, {checksum_reward()});
    trainer.set_progress_bar(false);
    trainer.setup();
    ASSERT_EQ(trainer.train().status, "completed");
  }
  const auto a = io::SafetensorsFile::open(straight.train.output_dir + "/adapter_model.safetensors");
  const auto b = io::SafetensorsFile::open(stopped.train.output_dir + "/adapter_model.safetensors");
  ASSERT_EQ(a.names(), b.names());
  bool trained = false;
  for (const auto& name : a.names()) {
    EXPECT_TRUE(a.tensor(name).equal(b.tensor(name))) << name;
    if (name.find("lora_B") != std::string::npos) trained = trained || a.tensor(name).abs().sum().item<double>() > 0;
  }
  EXPECT_TRUE(trained);  // the adapter moved: the comparison is not between two untouched adapters
  const auto rows_a = train::MetricsLog::read(straight.train.output_dir + "/metrics.jsonl");
  const auto rows_b = train::MetricsLog::read(stopped.train.output_dir + "/metrics.jsonl");
  ASSERT_EQ(rows_a.size(), rows_b.size());
  for (size_t i = 0; i < rows_a.size(); ++i) EXPECT_EQ(rows_a[i].values.at("reward"), rows_b[i].values.at("reward"));
  fs::remove_all(straight.train.output_dir);
  fs::remove_all(stopped.train.output_dir);
}

}  // namespace
}  // namespace ranktune
