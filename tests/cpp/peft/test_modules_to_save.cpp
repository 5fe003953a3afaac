// modules_to_save as PEFT defines it: a trained copy per adapter, the original (and a module tied to
// it) untouched, the original in use when adapters are off or another adapter is active, the copy
// kept by merge_and_unload; ensure_weight_tying's one copy for both ends of tied embeddings.

#include "peft/peft_test_models.h"
#include "ranktune/model/layers.h"
#include "ranktune/peft/modules_to_save.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

namespace ranktune {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CapturedWarnings;
using testing::error_of;
using testing::max_abs_diff;
using testing::parameter;
using testing::tiny_causal_lm;
using testing::tiny_input_ids;
using torch::Tensor;

torch::nn::EmbeddingImpl& embeddings(model::CausalLMImpl& m) {
  return *m.named_modules()["model.embed_tokens"]->as<torch::nn::EmbeddingImpl>();
}

// One SGD step on the loss of the tiny inputs, over every trainable parameter.
void train_step(model::CausalLMImpl& m) {
  m.train();
  const Tensor ids = tiny_input_ids();
  m.forward(ids, {}, ids).loss.backward();
  at::NoGradGuard no_grad;
  for (auto& p : m.parameters()) {
    if (p.requires_grad() && p.grad().defined()) {
      p.sub_(p.grad(), 1.0);
      p.mutable_grad() = Tensor();
    }
  }
  m.eval();
}

peft::LoraConfig saving(const std::vector<std::string>& modules) {
  return peft::LoraConfig().r(2).target_modules({"q_proj", "v_proj"}).modules_to_save(modules);
}

TEST(ModulesToSaveTest, EachAdapterTrainsItsOwnCopyAndTheOriginalStaysAsItWas) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  const Tensor ids = tiny_input_ids();
  const Tensor base_logits = model->forward(ids).logits;
  const Tensor head = model->lm_head_layer().weight.clone();
  peft::PeftModel peft_model(model, saving({"lm_head"}), "a");
  peft_model.add_adapter("b", saving({"lm_head"}));
  EXPECT_TRUE(parameter(*model, "lm_head.modules_to_save.a.weight").requires_grad());
  EXPECT_FALSE(parameter(*model, "lm_head.modules_to_save.b.weight").requires_grad());
  EXPECT_FALSE(parameter(*model, "lm_head.weight").requires_grad());
  train_step(*model);
  EXPECT_TRUE(parameter(*model, "lm_head.weight").equal(head));  // the original never trains
  EXPECT_FALSE(parameter(*model, "lm_head.modules_to_save.a.weight").equal(head));
  EXPECT_TRUE(parameter(*model, "lm_head.modules_to_save.b.weight").equal(head));
  const Tensor with_a = model->forward(ids).logits;

  peft_model.set_adapter("b");  // b's copy is still the original's values; its LoRA B is zero
  EXPECT_EQ(max_abs_diff(model->forward(ids).logits, base_logits), 0.0);
  EXPECT_TRUE(parameter(*model, "lm_head.modules_to_save.b.weight").requires_grad());
  EXPECT_FALSE(parameter(*model, "lm_head.modules_to_save.a.weight").requires_grad());
  peft_model.set_adapter("a");
  EXPECT_EQ(max_abs_diff(model->forward(ids).logits, with_a), 0.0);
  {
    peft::DisabledAdapters off(peft_model);
    EXPECT_EQ(max_abs_diff(model->forward(ids).logits, base_logits), 0.0);
  }
  // PEFT 0.12: with modules_to_save, one active adapter at a time.
  EXPECT_THAT(error_of([&] { peft_model.set_adapter(std::vector<std::string>{"a", "b"}); }),
              HasSubstr("only one adapter can be active"));
  peft_model.delete_adapter("a");
  EXPECT_EQ(model->named_parameters().find("lm_head.modules_to_save.a.weight"), nullptr);
  EXPECT_THAT(peft_model.active_adapters(), ElementsAre("b"));
}

TEST(ModulesToSaveTest, ATiedHeadGetsAnUntiedCopyAndTheEmbeddingsStayAsTheyWere) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  const Tensor embedding = parameter(*model, "model.embed_tokens.weight").clone();
  CapturedWarnings warnings;
  peft::PeftModel peft_model(model, saving({"lm_head"}));
  EXPECT_THAT(warnings.text(), HasSubstr("lm_head shares its weight with model.embed_tokens"));
  EXPECT_THAT(warnings.text(), HasSubstr("ensure_weight_tying"));
  train_step(*model);
  EXPECT_TRUE(parameter(*model, "model.embed_tokens.weight").equal(embedding));
  EXPECT_FALSE(parameter(*model, "lm_head.modules_to_save.default.weight").equal(embedding));
  EXPECT_TRUE(model->word_embeddings_tied());  // the head module still ties; only the copy stands in
}

TEST(ModulesToSaveTest, AnEmbeddingCopyLeavesTheTiedHeadAlone) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  const Tensor embedding = parameter(*model, "model.embed_tokens.weight").clone();
  peft::PeftModel peft_model(model, saving({"embed_tokens"}));
  train_step(*model);
  EXPECT_TRUE(parameter(*model, "model.embed_tokens.weight").equal(embedding));
  EXPECT_TRUE(model->lm_head_layer().weight.equal(embedding));  // the head reads the untouched original
  EXPECT_FALSE(embeddings(*model).weight.equal(embedding));  // the lookup reads the trained copy
}

TEST(ModulesToSaveTest, EnsureWeightTyingTrainsOneCopyThatBothEndsUse) {
  for (const char* named : {"lm_head", "model.embed_tokens"}) {
    auto model = tiny_causal_lm("qwen2", /*tied=*/true);
    const int64_t before = peft::count_parameters(*model).total;
    peft::PeftModel peft_model(model, saving({named}).ensure_weight_tying(true));
    // The copy is registered once, on the embeddings (where the tensor is a parameter).
    EXPECT_NE(model->named_parameters().find("model.embed_tokens.modules_to_save.default.weight"), nullptr) << named;
    EXPECT_EQ(model->named_parameters().find("lm_head.modules_to_save.default.weight"), nullptr) << named;
    const int64_t lora = peft::count_parameters(*model).total - before - 40 * 16;
    EXPECT_EQ(lora, 2 * (2 * 16 + 16 * 2 + 2 * 16 + 8 * 2)) << named;
    train_step(*model);
    EXPECT_TRUE(model->lm_head_layer().weight.is_same(embeddings(*model).weight)) << named;
    EXPECT_FALSE(model->lm_head_layer().weight.equal(parameter(*model, "model.embed_tokens.weight"))) << named;
  }
}

TEST(ModulesToSaveTest, EnsureWeightTyingRefusesATiedPartnerThatCarriesLora) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  CapturedWarnings warnings;
  peft::inject(*model, peft::LoraConfig().r(2).target_modules({"lm_head"}), "a");
  EXPECT_THAT(error_of([&] { peft::inject(*model, saving({"embed_tokens"}).ensure_weight_tying(true), "b"); }),
              HasSubstr("lm_head would share the copy of model.embed_tokens (ensure_weight_tying) but carries LoRA"));
  EXPECT_FALSE(peft::has_saved_modules(*model));
}

TEST(ModulesToSaveTest, EnsureWeightTyingWithNothingTiedSaysSo) {
  CapturedWarnings warnings;
  auto untied = tiny_causal_lm("qwen2", /*tied=*/false);
  peft::PeftModel(untied, saving({"lm_head"}).ensure_weight_tying(true));
  EXPECT_THAT(warnings.text(), HasSubstr("ensure_weight_tying is set, but the model has no tied weights"));
  auto tied = tiny_causal_lm("qwen2", /*tied=*/true);
  peft::PeftModel(tied, saving({"model.norm"}).ensure_weight_tying(true));
  EXPECT_THAT(warnings.text(), HasSubstr("modules_to_save names no module with tied weights"));
}

TEST(ModulesToSaveTest, MergeAndUnloadKeepsTheTrainedCopyAsTheModule) {
  const Tensor ids = tiny_input_ids();
  struct Case {
    bool tied;
    std::vector<std::string> modules;
    bool ensure;
    bool tied_after;
  };
  for (const Case& c : {Case{false, {"lm_head"}, false, false}, Case{true, {"lm_head"}, false, false},
                        Case{true, {"embed_tokens"}, false, false}, Case{true, {"embed_tokens"}, true, true}}) {
    auto model = tiny_causal_lm("qwen2", c.tied);
    peft::PeftModel peft_model(model, saving(c.modules).ensure_weight_tying(c.ensure));
    train_step(*model);
    const Tensor trained = model->forward(ids).logits;
    peft_model.merge_and_unload();
    EXPECT_LT(max_abs_diff(model->forward(ids).logits, trained), 1e-5) << c.modules[0] << " tied=" << c.tied;
    EXPECT_EQ(model->word_embeddings_tied(), c.tied_after) << c.modules[0] << " tied=" << c.tied;
    for (const auto& p : model->named_parameters()) {
      EXPECT_FALSE(peft::is_inside_saved_copies(p.key())) << p.key();
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
    // An untied head is a parameter of its own now, so it is saved with the weights.
    EXPECT_EQ(model->named_parameters().find("lm_head.weight") != nullptr, !c.tied_after);
  }
}

TEST(ModulesToSaveTest, UnloadKeepsTheActiveCopyAsTheModuleAsPeftDoes) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  peft::PeftModel peft_model(model, saving({"lm_head"}));
  train_step(*model);
  const Tensor copy = parameter(*model, "lm_head.modules_to_save.default.weight").clone();
  peft_model.unload();
  EXPECT_TRUE(parameter(*model, "lm_head.weight").equal(copy));
  for (auto& [name, linear] : peft::find_linears(*model)) EXPECT_TRUE(linear->adapter_names().empty()) << name;
  EXPECT_TRUE(peft_model.adapter_names().empty());
}

TEST(ModulesToSaveTest, AWeightedAdapterGetsFreshCopiesAndTwoCopiedSourcesAreRefused) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  const Tensor head = model->lm_head_layer().weight.clone();
  peft::PeftModel peft_model(model, saving({"lm_head"}), "a");
  peft_model.add_adapter("b", peft::LoraConfig().r(2).target_modules({"q_proj", "v_proj"}));
  train_step(*model);
  peft_model.add_weighted_adapter({"a", "b"}, {0.5, 0.5}, "ab", peft::WeightedAdapterOptions().combination_type(
                                                                  peft::CombinationType::cat));
  EXPECT_TRUE(parameter(*model, "lm_head.modules_to_save.ab.weight").equal(head));  // from the original, as PEFT
  peft_model.add_adapter("c", saving({"lm_head"}));
  EXPECT_THAT(error_of([&] { peft_model.add_weighted_adapter({"a", "c"}, {1.0, 1.0}, "ac"); }),
              HasSubstr("more than one of the adapters has a modules_to_save copy of lm_head"));
}

TEST(ModulesToSaveTest, NormsAndWholeBlocksCanBeSaved) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  const auto report = peft::inject(*model, saving({"model.norm", "layers.1.mlp"}));
  EXPECT_THAT(report.modules_to_save, ElementsAre("model.layers.1.mlp", "model.norm"));
  EXPECT_NE(model->named_parameters().find("model.norm.modules_to_save.default.weight"), nullptr);
  EXPECT_NE(model->named_parameters().find("model.layers.1.mlp.modules_to_save.default.down_proj.weight"), nullptr);
  const Tensor norm = parameter(*model, "model.norm.weight").clone();
  train_step(*model);
  EXPECT_TRUE(parameter(*model, "model.norm.weight").equal(norm));
  EXPECT_FALSE(parameter(*model, "model.norm.modules_to_save.default.weight").equal(norm));
  std::vector<std::string> names;
  for (const auto& [name, t] : peft::saved_module_tensors(*model, "default")) names.push_back(name);
  EXPECT_THAT(names, ElementsAre("model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                                 "model.layers.1.mlp.down_proj.weight", "model.norm.weight"));
}

TEST(ModulesToSaveTest, AModuleIsEitherAdaptedOrSaved) {
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  // Named in both: saved, as PEFT does.
  const auto report = peft::inject(
      *model, peft::LoraConfig().r(2).target_modules({"q_proj", "lm_head"}).modules_to_save(std::vector<std::string>{"lm_head"}));
  EXPECT_FALSE(model->lm_head_layer().has_adapter("default"));
  EXPECT_THAT(report.modules_to_save, ElementsAre("lm_head"));
  EXPECT_THAT(error_of([&] { peft::inject(*model, peft::LoraConfig().r(2).target_modules({"lm_head"}), "other"); }),
              HasSubstr("lm_head has a modules_to_save copy of another adapter"));
  EXPECT_THAT(error_of([&] {
                peft::inject(*model, peft::LoraConfig().r(2).target_modules({"v_proj"}).modules_to_save(
                                         std::vector<std::string>{"layers.0.self_attn"}), "third");
              }),
              HasSubstr("model.layers.0.self_attn.q_proj carries LoRA adapters (default)"));
  EXPECT_FALSE(model->named_modules()["model.layers.0.self_attn.v_proj"]->as<peft::LinearImpl>()->has_adapter("third"));
}

TEST(ModulesToSaveTest, AModuleItCannotSubstituteIsRefusedByName) {
  ranktune::testing::TinyModel model;  // its blocks hold a parameter of their own (norm_weight)
  const std::string message = error_of([&] {
    peft::inject(*model, peft::LoraConfig().target_modules({"q_proj"}).modules_to_save(std::vector<std::string>{"layers.0"}));
  });
  EXPECT_THAT(message, HasSubstr("modules_to_save: model.layers.0 cannot be copied"));
  EXPECT_THAT(message, HasSubstr("SubstitutableParameters"));
  for (auto& [name, linear] : peft::find_linears(*model)) EXPECT_TRUE(linear->adapter_names().empty()) << name;
}

TEST(ModulesToSaveTest, PlainModulesWithATorchLinearHeadWork) {
  // A plain torch::nn::Module root (no AdaptableModel): torch::nn::Linear is substitutable too.
  struct Net : torch::nn::Module {
    Net() {
      proj = register_module("proj", peft::Linear(4, 4));
      head = register_module("head", torch::nn::Linear(4, 3));
    }
    Tensor forward(const Tensor& x) { return head(proj(x)); }
    peft::Linear proj{nullptr};
    torch::nn::Linear head{nullptr};
  };
  auto net = std::make_shared<Net>();
  const Tensor x = at::randn({2, 4});
  const Tensor before = net->forward(x);
  peft::PeftModel peft_model(net, peft::LoraConfig().target_modules({"proj"}).modules_to_save(std::vector<std::string>{"head"}));
  {
    at::NoGradGuard no_grad;
    parameter(*net, "head.modules_to_save.default.bias").add_(1.0);
  }
  EXPECT_LT(max_abs_diff(net->forward(x), before + 1.0), 1e-6);
  peft_model.disable_adapters();
  EXPECT_EQ(max_abs_diff(net->forward(x), before), 0.0);
}

}  // namespace
}  // namespace ranktune
