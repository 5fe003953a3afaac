// Packed sequences (attention_mask = example numbers 1, 1, 2, 2, ...): each example's logits, loss
// and gradients are those it gets alone — attention stays inside the example and its positions
// restart at 0 — for RoPE (Llama) and learned positions (GPT-2). In float64, to the precision of
// the fp32 softmax and loss (a leak across examples or a shifted position changes logits by ~1e-1).

#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/model/layers.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <torch/torch.h>

using namespace ranktune;

namespace {

std::shared_ptr<model::CausalLMImpl> tiny(const std::string& dir) {
  torch::manual_seed(3);
  auto m = model::create_causal_lm(model::ModelConfig::load(std::string(RANKTUNE_SOURCE_DIR) + dir), torch::kFloat64);
  for (auto& p : m->parameters()) p.set_requires_grad(true);
  return m;
}

// Examples of the given lengths (random ids) packed in one row, followed by `padding` tokens.
struct Packed {
  std::vector<torch::Tensor> examples;
  torch::Tensor ids, mask, labels;
};

Packed make_packed(int64_t vocab, const std::vector<int64_t>& lengths, int64_t padding) {
  torch::manual_seed(11);
  Packed p;
  std::vector<torch::Tensor> ids, mask, labels;
  int64_t number = 1;
  for (const int64_t length : lengths) {
    p.examples.push_back(torch::randint(3, vocab, {1, length}, torch::kLong));
    ids.push_back(p.examples.back());
    mask.push_back(torch::full({1, length}, number++, torch::kLong));
    torch::Tensor l = p.examples.back().clone();
    l.index_put_({0, 0}, -100);  // an example's first token is never predicted inside it
    labels.push_back(l);
  }
  ids.push_back(torch::zeros({1, padding}, torch::kLong));
  mask.push_back(torch::zeros({1, padding}, torch::kLong));
  labels.push_back(torch::full({1, padding}, -100, torch::kLong));
  p.ids = torch::cat(ids, 1);
  p.mask = torch::cat(mask, 1);
  p.labels = torch::cat(labels, 1);
  return p;
}

void expect_packed_equals_alone(const std::shared_ptr<model::CausalLMImpl>& m, const std::vector<int64_t>& lengths,
                                int64_t padding) {
  const Packed p = make_packed(m->config().vocab_size, lengths, padding);
  const auto packed = m->forward(p.ids, p.mask, p.labels, nullptr, /*need_logits=*/true);
  // Loss: transformers' mean over every label of the row = token-weighted mean of the examples' losses.
  packed.loss.backward();
  std::vector<torch::Tensor> packed_grads;
  for (const auto& param : m->parameters()) packed_grads.push_back(param.grad().clone());
  m->zero_grad();
  int64_t offset = 0, total_tokens = 0;
  torch::Tensor summed = torch::zeros({}, torch::kFloat64);
  for (const auto& e : p.examples) {
    const int64_t length = e.size(1);
    const auto alone = m->forward(e, {}, e, nullptr, /*need_logits=*/true);
    EXPECT_LT(ranktune::testing::max_abs_diff(packed.logits.narrow(1, offset, length), alone.logits), 1e-5) << "example at " << offset;
    summed = summed + alone.loss.to(torch::kFloat64) * static_cast<double>(length - 1);
    total_tokens += length - 1;
    offset += length;
  }
  const torch::Tensor expected = summed / static_cast<double>(total_tokens);
  EXPECT_NEAR(packed.loss.item<double>(), expected.item<double>(), 1e-5);
  expected.backward();
  size_t i = 0;
  for (const auto& param : m->parameters()) {
    EXPECT_GT(packed_grads[i].abs().max().item<double>(), 0.0);
    EXPECT_LT(ranktune::testing::max_abs_diff(param.grad(), packed_grads[i++]), 1e-6);
  }
}

TEST(PackingTest, PackedLlamaExamplesGetTheirSoloLogitsLossAndGradients) {
  expect_packed_equals_alone(tiny("/examples/gsm8k/quickstart/model"), {5, 9, 3, 70}, 3);  // 70: over one attention block
}

TEST(PackingTest, PackedGpt2ExamplesGetTheirSoloLogitsLossAndGradients) {
  expect_packed_equals_alone(tiny("/tests/data/gpt2-untied"), {3, 2, 2}, 1);  // its n_positions is 8
}

TEST(PackingTest, PositionsRestartPerExampleAndPlainMasksAreUnchanged) {
  const torch::Tensor packed = torch::tensor({1, 1, 2, 2, 2, 3, 0, 0}, torch::kLong).unsqueeze(0);
  EXPECT_TRUE(torch::equal(model::position_ids(packed, 1, 8, 0),
                           torch::tensor({0, 1, 0, 1, 2, 0, 1, 1}, torch::kLong).unsqueeze(0)));
  const torch::Tensor left_padded = torch::tensor({0, 0, 1, 1, 1}, torch::kLong).unsqueeze(0);
  EXPECT_TRUE(torch::equal(model::position_ids(left_padded, 1, 5, 0), torch::tensor({1, 1, 0, 1, 2}, torch::kLong).unsqueeze(0)));
}

}  // namespace
