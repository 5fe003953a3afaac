// Every causal LM has an output head module: with tied embeddings its weight is the input
// embeddings' tensor (listed and saved once); untied heads, GPT-2's included, have their own.

#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <set>

namespace ranktune {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

const std::string kGpt2Untied = std::string(RANKTUNE_SOURCE_DIR) + "/tests/data/gpt2-untied";

TEST(OutputHeadTest, Gpt2WithAnUntiedHeadMatchesTransformers) {
  // Made by tests/data/gpt2-untied/make_fixture.py with transformers 4.40.
  auto model = model::load_causal_lm(kGpt2Untied);
  EXPECT_FALSE(model->word_embeddings_tied());
  const auto golden = io::SafetensorsFile::open(kGpt2Untied + "/golden.safetensors");
  const Tensor logits = model->forward(golden.tensor("input_ids")).logits;
  EXPECT_LT(max_abs_diff(logits, golden.tensor("logits")), 1e-5);
  // The head is its own parameter: changing it changes the logits, not the embeddings.
  const auto params = model->named_parameters();
  ASSERT_NE(params.find("lm_head.weight"), nullptr);
  EXPECT_FALSE(params["lm_head.weight"].is_same(params["transformer.wte.weight"]));
}

TEST(OutputHeadTest, ATiedHeadIsAModuleSharingTheEmbeddingTensor) {
  const std::string json = R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 16, "intermediate_size": 24,
      "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 40, "tie_word_embeddings": true})";
  auto model = model::create_causal_lm(model::ModelConfig::from_json(json));
  EXPECT_TRUE(model->word_embeddings_tied());
  const auto params = model->named_parameters();
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);  // listed once, as transformers lists it
  EXPECT_TRUE(model->lm_head_layer().weight.is_same(params["model.embed_tokens.weight"]));
  std::set<const c10::TensorImpl*> distinct;
  for (const auto& p : model->parameters()) EXPECT_TRUE(distinct.insert(p.unsafeGetTensorImpl()).second);
  const auto dir = std::filesystem::temp_directory_path() / "ranktune_tied_head.safetensors";
  model::save_model_weights(*model, dir.string());
  EXPECT_FALSE(io::SafetensorsFile::open(dir.string()).contains("lm_head.weight"));
  std::filesystem::remove(dir);
}

}  // namespace
}  // namespace ranktune
