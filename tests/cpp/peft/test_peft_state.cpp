// Adapter state lives in the layers: PeftModel reads which adapters are active, enabled and merged
// from them; a failed merge undoes exactly what that call merged; AdaptableModel tells inject what
// a model's output head is.

#include "peft/peft_test_models.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <limits>

namespace ranktune {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::error_of;
using testing::max_abs_diff;
using testing::TinyModel;
using torch::Tensor;

void randomize_b(torch::nn::Module& m, const std::string& adapter) {
  at::NoGradGuard no_grad;
  for (auto& [name, linear] : peft::find_linears(m)) {
    if (linear->has_adapter(adapter)) linear->adapter(adapter).lora_B.normal_(0.0, 0.3);
  }
}

std::vector<Tensor> weights(torch::nn::Module& m) {
  std::vector<Tensor> out;
  for (auto& [name, linear] : peft::find_linears(m)) out.push_back(linear->weight.clone());
  return out;
}

double max_weight_change(torch::nn::Module& m, const std::vector<Tensor>& before) {
  double worst = 0;
  size_t i = 0;
  for (auto& [name, linear] : peft::find_linears(m)) worst = std::max(worst, max_abs_diff(linear->weight, before[i++]));
  return worst;
}

TEST(PeftStateTest, PeftModelReadsActiveAndEnabledFromTheLayers) {
  TinyModel model;
  peft::PeftModel peft_model(model.ptr(), peft::LoraConfig().target_modules({"q_proj"}), "a");
  peft_model.add_adapter("b", peft::LoraConfig().target_modules({"v_proj"}));
  EXPECT_THAT(peft_model.active_adapters(), ElementsAre("a"));
  // Changed behind the PeftModel's back, on the model: the PeftModel sees it.
  peft::set_active_adapters(*model, {"b"});
  EXPECT_THAT(peft_model.active_adapters(), ElementsAre("b"));
  peft::set_adapters_enabled(*model, false);
  EXPECT_FALSE(peft_model.adapters_enabled());
  peft_model.enable_adapters();
  EXPECT_TRUE(model->model->layers[0]->as<testing::TinyBlockImpl>()->self_attn->v_proj->adapters_enabled());
  EXPECT_TRUE(peft_model.adapters_enabled());
}

TEST(PeftStateTest, WhatIsMergedIsRecordedOnceInTheLayer) {
  peft::Linear layer(peft::LinearOptions(6, 5));
  layer->add_adapter("a", peft::AdapterOptions().r(2));
  layer->add_adapter("b", peft::AdapterOptions().r(2));
  layer->merge(/*safe=*/false, {"b"});
  EXPECT_TRUE(layer->is_merged("b"));
  EXPECT_FALSE(layer->is_merged("a"));
  EXPECT_THAT(layer->merged_adapters(), ElementsAre("b"));
  std::ostringstream printed;
  layer->pretty_print(printed);
  EXPECT_THAT(printed.str(), HasSubstr("b: r=2 lora merged"));
  auto copy = std::dynamic_pointer_cast<peft::LinearImpl>(layer->clone());
  EXPECT_TRUE(copy->is_merged("b"));
  EXPECT_FALSE(layer->has_active_update());  // merged: forward runs the (merged) base only
  layer->unmerge();
  EXPECT_FALSE(layer->is_merged("b"));
  EXPECT_TRUE(layer->has_active_update());
}

TEST(MergeRollbackTest, AFailedMergeUndoesOnlyWhatThatCallMerged) {
  torch::manual_seed(80);
  TinyModel model;
  peft::inject(*model, peft::LoraConfig().r(2).target_modules("all-linear"), "a");
  peft::inject(*model, peft::LoraConfig().r(2).target_modules("all-linear"), "b");
  randomize_b(*model, "a");
  randomize_b(*model, "b");
  peft::merge_adapters(*model, /*safe=*/true, {"a"});  // an earlier call: stays merged
  const std::vector<Tensor> after_a = weights(*model);
  {
    // b is NaN on the last layer only, so every layer before it merged b first.
    at::NoGradGuard no_grad;
    auto last = peft::find_linears(*model);
    last.pop_back();  // lm_head: "all-linear" leaves it out
    last.back().second->adapter("b").lora_B.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const std::string message = error_of([&] { peft::merge_adapters(*model, /*safe=*/true, {"b"}); });
  EXPECT_THAT(message, HasSubstr("model.layers.1.mlp.down_proj: merging adapter 'b' gives NaN or Inf"));
  EXPECT_LT(max_weight_change(*model, after_a), 1e-6);
  for (auto& [name, linear] : peft::find_linears(*model)) {
    if (linear->has_adapter("a")) EXPECT_THAT(linear->merged_adapters(), ElementsAre("a")) << name;
  }
}

TEST(MergeRollbackTest, ALayerThatFailsHalfwayIsRestoredToo) {
  torch::manual_seed(81);
  TinyModel model;
  peft::inject(*model, peft::LoraConfig().r(2).target_modules({"q_proj"}), "b");
  peft::inject(*model, peft::LoraConfig().r(2).target_modules({"q_proj"}), "c");
  randomize_b(*model, "b");
  randomize_b(*model, "c");
  auto q0 = model->model->layers[0]->as<testing::TinyBlockImpl>()->self_attn->q_proj;
  {
    at::NoGradGuard no_grad;
    q0->adapter("c").lora_A.fill_(std::numeric_limits<float>::infinity());
  }
  const std::vector<Tensor> before = weights(*model);
  // On layer 0, b merges and then c fails: b must come out again (and layer 1 is never reached).
  const std::string message = error_of([&] { peft::merge_adapters(*model, /*safe=*/true, {"b", "c"}); });
  EXPECT_THAT(message, HasSubstr("model.layers.0.self_attn.q_proj: merging adapter 'c'"));
  EXPECT_LT(max_weight_change(*model, before), 1e-6);
  for (auto& [name, linear] : peft::find_linears(*model)) EXPECT_THAT(linear->merged_adapters(), IsEmpty()) << name;

  // The same on one layer, directly.
  EXPECT_FALSE(error_of([&] { q0->merge(/*safe=*/true, {"b", "c"}); }).empty());
  EXPECT_THAT(q0->merged_adapters(), IsEmpty());
  EXPECT_LT(max_abs_diff(q0->weight, before[0]), 1e-6);
}

TEST(AdaptableModelTest, InjectAsksTheModelForItsHeadAndFallsBackToLmHead) {
  // A tied causal LM has an lm_head module now, and "all-linear" leaves it alone.
  auto tied = testing::tiny_causal_lm("qwen2", /*tied=*/true);
  const peft::ModelView view = peft::view_of(*tied);
  EXPECT_EQ(view.output_head, "lm_head");
  EXPECT_EQ(view.task_type, "CAUSAL_LM");
  EXPECT_EQ(view.layers.back().first, "lm_head");
  peft::inject(*tied, peft::LoraConfig().target_modules("all-linear"));
  EXPECT_FALSE(tied->lm_head_layer().has_adapter("default"));
  EXPECT_TRUE(tied->lm_head_layer().weight_is_tied());

  // A plain module: "lm_head" unless InjectOptions says otherwise.
  TinyModel plain;
  EXPECT_EQ(peft::view_of(*plain).output_head, "lm_head");
  peft::inject(*plain, peft::LoraConfig().target_modules("all-linear"), "default",
               peft::InjectOptions().output_head(""));  // no output head: lm_head is a linear like any other
  EXPECT_TRUE(plain->lm_head->has_adapter("default"));
}

TEST(AdaptableModelTest, LoraOnATiedHeadWarnsThatMergingChangesBothEnds) {
  auto tied = testing::tiny_causal_lm("qwen2", /*tied=*/true);
  testing::CapturedWarnings warnings;
  peft::inject(*tied, peft::LoraConfig().target_modules({"lm_head"}));
  EXPECT_THAT(warnings.text(), HasSubstr("lm_head shares its weight with another module"));
}

}  // namespace
}  // namespace ranktune
