// train/step: one optimizer step. Gradient accumulation over micro-batches equals one batch holding
// all their examples; a step with a non-finite loss or gradient changes nothing and is counted.

#include "ranktune/core/log.h"
#include "ranktune/data/batching.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "test_util.h"
#include "train/step.h"

#include <ATen/ATen.h>
#include <c10/util/string_utils.h>
#include <gmock/gmock.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

using namespace ranktune;
using ranktune::testing::max_abs_diff;

namespace {

// A tiny Llama in float64 with every parameter trained: every gradient is non-zero.
std::shared_ptr<model::CausalLMImpl> tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  auto lm = model::create_causal_lm(
      model::ModelConfig::from_json(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 40, "max_position_embeddings": 32})", "tiny/config.json"),
      torch::kFloat64);
  for (auto& p : lm->parameters()) p.set_requires_grad(true);
  return lm;
}

// Four examples of different lengths whose responses have 1, 5, 2 and 6 tokens: micro-batches of
// two then hold 6 and 8 loss tokens, so a plain average of their losses is not the batch loss.
std::vector<data::TokenizedExample> examples() {
  const std::vector<std::pair<int, int>> prompt_response = {{4, 1}, {3, 5}, {6, 2}, {2, 6}};
  std::vector<data::TokenizedExample> out;
  int64_t id = 3;
  for (const auto& [prompt, response] : prompt_response) {
    data::TokenizedExample e;
    for (int i = 0; i < prompt + response; ++i) {
      e.input_ids.push_back(id);
      e.labels.push_back(i < prompt ? -100 : id);
      id = (id * 7 + 5) % 40;
    }
    out.push_back(e);
  }
  return out;
}

data::Batch batch_of(const std::vector<data::TokenizedExample>& all, std::vector<size_t> indices) {
  std::vector<const data::TokenizedExample*> members;
  for (size_t i : indices) members.push_back(&all[i]);
  return data::collate(members, /*pad_token_id=*/0);
}

// The causal LM loss in float64 from the model's float64 logits: the mean of -log p(label) over
// the tokens whose label is not -100. (The model's own loss upcasts to float32, as transformers'
// does, which would hide differences below 1e-7.)
train::MicroBatchLoss loss_of(model::CausalLMImpl& lm) {
  return [&lm](const data::Batch& b) {
    const torch::Tensor logits = lm.forward(b.input_ids, b.attention_mask).logits;
    const int64_t vocab = logits.size(-1);
    return at::cross_entropy_loss(logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, vocab}),
                                  b.labels.narrow(1, 1, b.labels.size(1) - 1).reshape({-1}), /*weight=*/{},
                                  at::Reduction::Mean, /*ignore_index=*/-100);
  };
}

std::map<std::string, torch::Tensor> gradients(model::CausalLMImpl& lm) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : lm.named_parameters()) out[item.key()] = item.value().grad().clone();
  return out;
}

train::TrainSection settings() {
  train::TrainSection s;
  s.lr = 1e-2;
  s.weight_decay = 0.01;
  s.max_grad_norm = 0;  // no clipping: the gradients themselves are compared
  s.schedule = train::Schedule::constant;
  s.max_nan_steps = 10;
  return s;
}

TEST(GradientAccumulationTest, MicroBatchesGiveTheGradientsOfOneBatch) {
  const auto all = examples();
  const data::Batch whole = batch_of(all, {0, 1, 2, 3});
  const std::vector<data::Batch> halves = {batch_of(all, {0, 1}), batch_of(all, {2, 3})};
  ASSERT_EQ(halves[0].loss_tokens, 6);
  ASSERT_EQ(halves[1].loss_tokens, 8);

  auto lm = tiny_model(7);
  const double one_batch_loss = train::accumulate_gradients({whole}, loss_of(*lm));
  const auto one_batch = gradients(*lm);
  lm->zero_grad();
  const double accumulated_loss = train::accumulate_gradients(halves, loss_of(*lm));
  const auto accumulated = gradients(*lm);

  EXPECT_NEAR(accumulated_loss, one_batch_loss, 1e-12);
  ASSERT_EQ(accumulated.size(), one_batch.size());
  for (const auto& [name, g] : one_batch) {
    EXPECT_GT(g.abs().max().item<double>(), 0) << name;
    EXPECT_LT(max_abs_diff(accumulated.at(name), g), 1e-12) << name;
  }
  // What the test guards against: the plain average of the two micro-batch means is another loss
  // with other gradients.
  lm->zero_grad();
  torch::Tensor plain_average = (loss_of(*lm)(halves[0]) + loss_of(*lm)(halves[1])) / 2;
  plain_average.backward();
  EXPECT_GT(std::abs(plain_average.item<double>() - one_batch_loss), 1e-6);
  EXPECT_GT(max_abs_diff(gradients(*lm).at("model.embed_tokens.weight"), one_batch.at("model.embed_tokens.weight")), 1e-6);
}

TEST(GradientAccumulationTest, AStepOverMicroBatchesEqualsAStepOverOneBatch) {
  const auto all = examples();
  auto one = tiny_model(11);
  auto two = tiny_model(11);
  train::TrainingOptimizer one_optimizer(*one, settings());
  train::TrainingOptimizer two_optimizer(*two, settings());
  train::TrainerState one_progress, two_progress;
  one_progress.total_steps = two_progress.total_steps = 2;
  for (int step = 0; step < 2; ++step) {
    const auto a = train::optimizer_step(one_optimizer, {batch_of(all, {0, 1, 2, 3})}, loss_of(*one), settings(), 0, one_progress);
    const auto b = train::optimizer_step(two_optimizer, {batch_of(all, {0, 1}), batch_of(all, {2, 3})}, loss_of(*two),
                                         settings(), 0, two_progress);
    ASSERT_TRUE(a.applied && b.applied);
    EXPECT_NEAR(a.loss, b.loss, 1e-12);
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-12);
  }
  const auto two_parameters = two->named_parameters();
  for (const auto& item : one->named_parameters()) {
    EXPECT_LT(max_abs_diff(item.value(), two_parameters[item.key()]), 1e-12) << item.key();
    EXPECT_EQ(two_parameters[item.key()].grad().abs().max().item<double>(), 0) << "gradients are zeroed";
  }
  EXPECT_EQ(two_progress.step, 2);
}

// ---- non-finite steps ----------------------------------------------------------------------------------

// Copies of every parameter and every AdamW moment and step count.
struct Snapshot {
  std::vector<torch::Tensor> parameters, exp_avg, exp_avg_sq;
  std::vector<int64_t> steps;
};

Snapshot snapshot(const train::TrainingOptimizer& optimizer) {
  Snapshot s;
  for (const auto& p : optimizer.parameters()) {
    s.parameters.push_back(p.detach().clone());
    const auto& state = optimizer.adamw().state();
    const auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
    if (it == state.end()) continue;
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    s.exp_avg.push_back(adam.exp_avg().clone());
    s.exp_avg_sq.push_back(adam.exp_avg_sq().clone());
    s.steps.push_back(adam.step());
  }
  return s;
}

void expect_unchanged(const Snapshot& before, const Snapshot& after) {
  ASSERT_EQ(before.parameters.size(), after.parameters.size());
  for (size_t i = 0; i < before.parameters.size(); ++i) EXPECT_TRUE(before.parameters[i].equal(after.parameters[i])) << i;
  ASSERT_EQ(before.exp_avg.size(), after.exp_avg.size());
  for (size_t i = 0; i < before.exp_avg.size(); ++i) {
    EXPECT_TRUE(before.exp_avg[i].equal(after.exp_avg[i])) << i;
    EXPECT_TRUE(before.exp_avg_sq[i].equal(after.exp_avg_sq[i])) << i;
  }
  EXPECT_EQ(before.steps, after.steps);
}

TEST(NonFiniteStepTest, SkippedStepChangesNoParameterNoOptimizerStateAndIsCountedAndLogged) {
  const auto all = examples();
  auto lm = tiny_model(5);
  train::TrainingOptimizer optimizer(*lm, settings());
  train::TrainerState progress;
  progress.total_steps = 10;
  const std::vector<data::Batch> micro_batches = {batch_of(all, {0, 1}), batch_of(all, {2, 3})};
  ASSERT_TRUE(train::optimizer_step(optimizer, micro_batches, loss_of(*lm), settings(), 0, progress).applied);
  const Snapshot trained = snapshot(optimizer);
  ASSERT_FALSE(trained.exp_avg.empty());

  std::vector<std::string> warnings;
  const LogSink previous = set_log_sink([&](LogLevel level, const std::string& m) {
    if (level == LogLevel::warning) warnings.push_back(m);
  });

  // A non-finite loss in the second micro-batch, after the first one's backward has run.
  const train::MicroBatchLoss nan_second = [&, calls = 0](const data::Batch& b) mutable {
    const torch::Tensor loss = lm->forward(b.input_ids, b.attention_mask, b.labels).loss;
    return ++calls == 2 ? loss * std::numeric_limits<double>::quiet_NaN() : loss;
  };
  const auto skipped = train::optimizer_step(optimizer, micro_batches, nan_second, settings(), 0, progress);
  EXPECT_FALSE(skipped.applied);
  EXPECT_TRUE(std::isnan(skipped.loss));
  expect_unchanged(trained, snapshot(optimizer));
  for (const auto& p : optimizer.parameters()) EXPECT_EQ(p.grad().abs().max().item<double>(), 0) << "gradients are zeroed";
  EXPECT_EQ(progress.nan_streak, 1);
  EXPECT_EQ(progress.step, 2);

  // A finite loss whose gradient is not finite.
  torch::Tensor embed = lm->named_parameters()["model.embed_tokens.weight"];
  const unsigned hook = embed.register_hook([](torch::Tensor g) { return g * std::numeric_limits<double>::infinity(); });
  const auto inf_grad = train::optimizer_step(optimizer, micro_batches, loss_of(*lm), settings(), 0, progress);
  embed.remove_hook(hook);
  EXPECT_FALSE(inf_grad.applied);
  EXPECT_TRUE(std::isfinite(inf_grad.loss));
  EXPECT_FALSE(std::isfinite(inf_grad.grad_norm));
  expect_unchanged(trained, snapshot(optimizer));
  EXPECT_EQ(progress.nan_streak, 2);
  EXPECT_EQ(progress.step, 3);

  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], ::testing::HasSubstr("step 2: non-finite loss or gradient; step skipped (1 in a row, the run stops at 10)"));
  EXPECT_THAT(warnings[1], ::testing::HasSubstr("step 3: non-finite loss or gradient; step skipped (2 in a row"));
  set_log_sink(previous);

  // The next good step trains again and ends the streak.
  EXPECT_TRUE(train::optimizer_step(optimizer, micro_batches, loss_of(*lm), settings(), 0, progress).applied);
  EXPECT_EQ(progress.nan_streak, 0);
  EXPECT_FALSE(snapshot(optimizer).parameters[0].equal(trained.parameters[0]));
}

TEST(NonFiniteStepTest, MicroBatchesWithoutLossTokensAreLeftOutAndNoneAtAllIsNotFinite) {
  const auto all = examples();
  data::TokenizedExample prompt_only;
  prompt_only.input_ids = {5, 6, 7};
  prompt_only.labels = {-100, -100, -100};
  const data::Batch empty = data::collate({&prompt_only}, 0);
  ASSERT_EQ(empty.loss_tokens, 0);
  auto lm = tiny_model(9);
  const double with_empty = train::accumulate_gradients({batch_of(all, {0, 1}), empty}, loss_of(*lm));
  lm->zero_grad();
  EXPECT_NEAR(with_empty, train::accumulate_gradients({batch_of(all, {0, 1})}, loss_of(*lm)), 1e-12);
  EXPECT_TRUE(std::isnan(train::accumulate_gradients({empty}, loss_of(*lm))));
}

}  // namespace
