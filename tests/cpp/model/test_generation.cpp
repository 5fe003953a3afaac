// Shared-prefix group sampling (num_return_sequences) and per-row seeding.
#include "ranktune/core/error.h"
#include "ranktune/model/generation.h"
#include "ranktune/model/llama.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <map>

using namespace ranktune;

namespace {

model::ModelConfig tiny_llama() {
  return model::ModelConfig::from_json(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
          "max_position_embeddings": 64})",
      "tiny/config.json");
}

// A Llama that counts the tokens its forward passes process (prefill and decoding steps).
class CountingLlama : public model::LlamaForCausalLMImpl {
 public:
  CountingLlama() : LlamaForCausalLMImpl(tiny_llama(), torch::kFloat32) {}
  model::CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                const torch::Tensor& labels, model::KVCache* cache, bool need_logits) override {
    forward_tokens += input_ids.numel();
    return LlamaForCausalLMImpl::forward(input_ids, attention_mask, labels, cache, need_logits);
  }
  int64_t forward_tokens = 0;
};

std::vector<std::vector<int64_t>> repeat_each(const std::vector<std::vector<int64_t>>& prompts, int64_t times) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& p : prompts) {
    for (int64_t i = 0; i < times; ++i) out.push_back(p);
  }
  return out;
}

std::vector<std::vector<int64_t>> tokens_of(const std::vector<model::Generation>& out) {
  std::vector<std::vector<int64_t>> tokens;
  for (const auto& g : out) tokens.push_back(g.tokens);
  return tokens;
}

}  // namespace

TEST(GroupSamplingTest, EqualsRepeatingEachPromptGreedyAndSampled) {
  torch::manual_seed(61);
  CountingLlama model;
  // Different lengths: the group's rows are left-padded like any batch.
  const std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4, 5}, {6, 7}};
  for (const double temperature : {0.0, 1.0}) {
    const auto options = model::GenerationOptions().max_new_tokens(6).temperature(temperature).seed(11);
    const auto grouped = model::generate(model, prompts, model::GenerationOptions(options).num_return_sequences(3));
    const auto repeated = model::generate(model, repeat_each(prompts, 3), options);
    ASSERT_EQ(grouped.size(), 6u);
    EXPECT_EQ(tokens_of(grouped), tokens_of(repeated)) << "temperature " << temperature;
    if (temperature > 0) {  // each row has its own draws: the samples of one prompt differ
      EXPECT_TRUE(grouped[0].tokens != grouped[1].tokens || grouped[1].tokens != grouped[2].tokens);
    }
  }
}

TEST(GroupSamplingTest, PrefillsEachPromptOnce) {
  torch::manual_seed(62);
  CountingLlama model;
  const std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}};
  const auto options = model::GenerationOptions().max_new_tokens(3).temperature(1.0);
  model::generate(model, prompts, model::GenerationOptions(options).num_return_sequences(4));
  // 2 prompts × 5 tokens once, then 2 steps × 8 rows (the third token needs no forward pass).
  EXPECT_EQ(model.forward_tokens, 2 * 5 + 2 * 8);
  model.forward_tokens = 0;
  model::generate(model, repeat_each(prompts, 4), options);
  EXPECT_EQ(model.forward_tokens, 8 * 5 + 2 * 8);
}

TEST(GroupSamplingTest, ARowsSamplesDoNotDependOnTheOtherRows) {
  torch::manual_seed(63);
  CountingLlama model;
  const auto options = model::GenerationOptions().max_new_tokens(8).temperature(1.0).seed(5);
  const auto with_b = model::generate(model, {{1, 2, 3}, {9, 9}}, options);
  const auto with_c = model::generate(model, {{1, 2, 3}, {4, 8, 15, 16}}, options);
  const auto alone = model::generate(model, {{1, 2, 3}}, options);
  EXPECT_EQ(with_b[0].tokens, alone[0].tokens);
  EXPECT_EQ(with_c[0].tokens, alone[0].tokens);
  // Row 1 keeps its draws when row 0 stops early.
  ASSERT_NE(with_b[0].tokens[0], with_b[1].tokens[0]);
  const auto stopping = model::generate(model, {{1, 2, 3}, {9, 9}}, model::GenerationOptions(options).stop(
      [&](const std::vector<int64_t>& g) { return g == std::vector<int64_t>(with_b[0].tokens.begin(), with_b[0].tokens.begin() + 1); }));
  EXPECT_EQ(stopping[0].finish_reason, "stop");
  EXPECT_EQ(stopping[1].tokens, with_b[1].tokens);
  EXPECT_NE(model::row_seed(5, 1), model::row_seed(6, 0));
  EXPECT_EQ(model::row_seed(5, 0), 5u);
}

TEST(GroupSamplingTest, FinishedRowsLeaveTheBatchAndTheOthersKeepTheirTokens) {
  torch::manual_seed(64);
  CountingLlama model;
  // Left-padded prompts, greedy and sampled. Each row's tokens do not depend on the other rows
  // (its own generator), so a row stopped early must hold a prefix of what it generates unstopped.
  const std::vector<std::vector<int64_t>> prompts = {{1, 2, 3}, {4, 5}, {6}, {7, 8, 9, 10}, {11, 12}, {13}, {14, 15}, {16}};
  for (const double temperature : {0.0, 1.0}) {
    const auto options = model::GenerationOptions().max_new_tokens(10).temperature(temperature).seed(3);
    const auto full = tokens_of(model::generate(model, prompts, options));
    // Rows stop after 1, 2, 3, 4, 5, 1, 2, 3 tokens: the stop condition knows a row by its first
    // token (rows sharing one stop at the first such row's length).
    std::map<int64_t, size_t> stop_after;
    for (size_t i = 0; i < full.size(); ++i) stop_after.emplace(full[i][0], 1 + i % 5);
    std::vector<std::vector<int64_t>> expected;
    for (const auto& f : full) expected.emplace_back(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(stop_after.at(f[0])));
    model.forward_tokens = 0;
    const auto stopped = model::generate(model, prompts, model::GenerationOptions(options).stop(
        [&](const std::vector<int64_t>& g) { return g.size() >= stop_after.at(g[0]); }));
    EXPECT_EQ(tokens_of(stopped), expected) << "temperature " << temperature;
    // Keeping every row would cost 8 rows per step; only live rows (and those finished within the
    // last quarter) are computed.
    size_t longest = 0, total = 0;
    for (const auto& e : expected) longest = std::max(longest, e.size()), total += e.size();
    const int64_t prefill = 8 * 4, decoded = model.forward_tokens - prefill;
    EXPECT_LT(decoded, static_cast<int64_t>(8 * (longest - 1))) << "temperature " << temperature;
    EXPECT_GE(decoded, static_cast<int64_t>(total - 8));
  }
}

TEST(GroupSamplingTest, RejectsANonPositiveGroup) {
  CountingLlama model;
  try {
    model::generate(model, {{1}}, model::GenerationOptions().num_return_sequences(0));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("num_return_sequences must be >= 1, got 0"));
  }
}
