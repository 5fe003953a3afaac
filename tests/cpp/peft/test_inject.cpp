// Injection by module name, what trains afterwards, model-wide operations, PeftModel and
// weighted combinations of adapters.

#include "ranktune/core/error.h"
#include "ranktune/peft/inject.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

using namespace ranktune::peft;
using ranktune::testing::max_abs_diff;
using ranktune::testing::TinyModel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using torch::Tensor;

namespace {

std::vector<std::string> trainable_names(const torch::nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) {
    if (p.value().requires_grad()) out.push_back(p.key());
  }
  return out;
}

void randomize_all_b(torch::nn::Module& m) {
  at::NoGradGuard no_grad;
  for (auto& [name, linear] : find_linears(m)) {
    for (const auto& a : linear->adapter_names()) linear->adapter(a).lora_B.normal_(0.0, 0.3);
  }
}

TEST(InjectTest, AdaptsMatchingLayersAndReportsLikePeft) {
  TinyModel model(2, 16, 24, false, 32);
  const auto report = inject(*model, LoraConfig().r(4).target_modules({"q_proj", "v_proj"}));
  EXPECT_THAT(report.adapted_modules,
              ElementsAre("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                          "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"));
  // 4 layers × (A: 4×16 + B: 16×4) = 512 trainable parameters.
  EXPECT_EQ(report.parameters.trainable, 512);
  const int64_t base = 2 * (4 * 16 * 16 + 3 * 16 * 24 + 16) + 16 * 32;
  EXPECT_EQ(report.parameters.total, base + 512);
  EXPECT_EQ(base + 512, 5408);
  EXPECT_EQ(report.summary(), "trainable params: 512 || all params: 5,408 || trainable%: 9.4675");
  for (const auto& name : trainable_names(*model)) EXPECT_THAT(name, HasSubstr("lora_")) << name;
}

TEST(InjectTest, AllLinearLeavesTheOutputHeadAlone) {
  TinyModel model;
  const auto report = inject(*model, LoraConfig().target_modules("all-linear"));
  EXPECT_EQ(report.adapted_modules.size(), 14u);
  EXPECT_FALSE(model->lm_head->has_adapter("default"));
}

TEST(InjectTest, NothingMatchedListsSomeNamesAndChangesNothing) {
  TinyModel model;
  try {
    inject(*model, LoraConfig().target_modules({"query"}));
    FAIL() << "expected an error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("matched no adaptable linear layer"));
    EXPECT_THAT(e.what(), HasSubstr("model.layers.0.self_attn.q_proj"));
  }
  EXPECT_TRUE(find_linears(*model)[0].second->adapter_names().empty());
}

TEST(InjectTest, MissingTargetModulesIsAnError) {
  TinyModel model;
  EXPECT_THROW(inject(*model, LoraConfig()), ranktune::Error);
}

TEST(InjectTest, FailureHalfwayLeavesTheModelAsItWas) {
  // PiSSA needs r <= min(in, out); the rank pattern makes only the last layer's down_proj fail,
  // after every other layer (and its base weight) was already changed.
  TinyModel model;
  std::vector<Tensor> before;
  for (auto& [name, linear] : find_linears(*model)) before.push_back(linear->weight.clone());
  const auto config = LoraConfig()
                          .r(4)
                          .target_modules("all-linear")
                          .init_lora_weights(LoraInit::parse("pissa"))
                          .rank_pattern({{"model.layers.1.mlp.down_proj", 40}});
  EXPECT_THROW(inject(*model, config), ranktune::Error);
  size_t i = 0;
  for (auto& [name, linear] : find_linears(*model)) {
    EXPECT_TRUE(linear->adapter_names().empty()) << name;
    EXPECT_LT(max_abs_diff(linear->weight, before[i++]), 1e-5) << name;
  }
}

TEST(InjectTest, BiasModesChooseWhichBiasesTrain) {
  {
    TinyModel model(1, 8, 12, /*bias=*/true);
    inject(*model, LoraConfig().r(2).target_modules({"q_proj"}).bias(LoraBias::lora_only));
    const auto names = trainable_names(*model);
    EXPECT_THAT(names, ::testing::Contains("model.layers.0.self_attn.q_proj.bias"));
    EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.self_attn.k_proj.bias")));
  }
  {
    TinyModel model(1, 8, 12, /*bias=*/true);
    inject(*model, LoraConfig().r(2).target_modules({"q_proj"}).bias(LoraBias::all));
    const auto names = trainable_names(*model);
    EXPECT_THAT(names, ::testing::Contains("model.layers.0.self_attn.k_proj.bias"));
    EXPECT_THAT(names, ::testing::Not(::testing::Contains("model.layers.0.self_attn.k_proj.weight")));
  }
}

TEST(InjectTest, ModulesToSaveTrainACopyInFull) {
  TinyModel model;
  const auto report = inject(*model, LoraConfig().r(2).target_modules({"q_proj"}).modules_to_save(std::vector<std::string>{"lm_head"}));
  EXPECT_THAT(report.modules_to_save, ElementsAre("lm_head"));
  EXPECT_TRUE(model->named_parameters()["lm_head.modules_to_save.default.weight"].requires_grad());
  EXPECT_FALSE(model->named_parameters()["lm_head.weight"].requires_grad());  // the original stays (modules_to_save.h)
}

TEST(InjectTest, InferenceModeFreezesEverything) {
  TinyModel model;
  inject(*model, LoraConfig().r(2).target_modules({"q_proj"}).inference_mode(true));
  EXPECT_TRUE(trainable_names(*model).empty());
}

TEST(InjectTest, RankPatternGivesPerLayerRanks) {
  TinyModel model;
  inject(*model, LoraConfig().r(4).target_modules({"q_proj", "down_proj"}).rank_pattern({{"down_proj", 2}}).alpha_pattern({{"q_proj", 16.0}}));
  EXPECT_EQ(model->model->layers[0]->as<ranktune::testing::TinyBlockImpl>()->mlp->down_proj->adapter("default").options.r(), 2);
  const Adapter& q = model->model->layers[0]->as<ranktune::testing::TinyBlockImpl>()->self_attn->q_proj->adapter("default");
  EXPECT_EQ(q.options.r(), 4);
  EXPECT_DOUBLE_EQ(q.scaling, 4.0);
}

TEST(InjectTest, MergeAndUnloadKeepsOutputsAndRemovesAdapters) {
  torch::manual_seed(41);
  TinyModel model;
  inject(*model, LoraConfig().r(4).target_modules("all-linear").use_dora(true));
  randomize_all_b(*model);
  const Tensor x = torch::randn({3, 16});
  const Tensor adapted = model->forward(x);
  merge_and_unload(*model, /*safe=*/true);
  EXPECT_LT(max_abs_diff(model->forward(x), adapted), 1e-5);
  for (auto& [name, linear] : find_linears(*model)) EXPECT_TRUE(linear->adapter_names().empty()) << name;
  for (const auto& p : model->named_parameters()) EXPECT_THAT(p.key(), ::testing::Not(HasSubstr("lora_")));
}

TEST(InjectTest, SafeMergeFailureNamesTheLayerAndMergesNothing) {
  TinyModel model;
  inject(*model, LoraConfig().r(2).target_modules({"q_proj"}));
  {
    at::NoGradGuard no_grad;
    model->model->layers[1]->as<ranktune::testing::TinyBlockImpl>()->self_attn->q_proj->adapter("default").lora_B.fill_(NAN);
  }
  try {
    merge_adapters(*model, /*safe=*/true);
    FAIL() << "expected an error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("model.layers.1.self_attn.q_proj"));
  }
  for (auto& [name, linear] : find_linears(*model)) EXPECT_FALSE(linear->merged()) << name;
}

// ---- PeftModel -----------------------------------------------------------------------------------

TEST(PeftModelTest, AddAdapterDoesNotActivateItAndSetAdapterSwitches) {
  torch::manual_seed(42);
  TinyModel model;
  PeftModel peft(model.ptr(), LoraConfig().r(2).target_modules({"q_proj", "v_proj"}));
  peft.add_adapter("other", LoraConfig().r(3).target_modules({"q_proj"}));
  EXPECT_THAT(peft.active_adapters(), ElementsAre("default"));
  for (const auto& name : trainable_names(*model)) EXPECT_THAT(name, HasSubstr(".default.")) << name;
  randomize_all_b(*model);
  const Tensor x = torch::randn({2, 16});
  const Tensor with_default = model->forward(x);
  peft.set_adapter("other");
  const Tensor with_other = model->forward(x);
  EXPECT_GT(max_abs_diff(with_default, with_other), 1e-4);
  for (const auto& name : trainable_names(*model)) EXPECT_THAT(name, HasSubstr(".other.")) << name;
  peft.delete_adapter("other");
  EXPECT_THAT(peft.active_adapters(), ElementsAre("default"));
  EXPECT_LT(max_abs_diff(model->forward(x), with_default), 1e-6);
}

TEST(PeftModelTest, DisabledGuardRestoresAdapters) {
  torch::manual_seed(43);
  TinyModel model;
  PeftModel peft(model.ptr(), LoraConfig().r(2).target_modules("all-linear"));
  randomize_all_b(*model);
  const Tensor x = torch::randn({2, 16});
  const Tensor adapted = model->forward(x);
  Tensor base;
  {
    DisabledAdapters guard(peft);
    base = model->forward(x);
  }
  EXPECT_GT(max_abs_diff(adapted, base), 1e-4);
  EXPECT_EQ(max_abs_diff(model->forward(x), adapted), 0.0);
}

TEST(PeftModelTest, TrainableCountMatchesPrintTrainableParameters) {
  TinyModel model;
  PeftModel peft(model.ptr(), LoraConfig().r(4).target_modules({"q_proj"}).use_dora(true));
  // 2 layers × (4×16 + 16×4 + 16 magnitude)
  EXPECT_EQ(peft.trainable_parameters().trainable, 2 * (64 + 64 + 16));
}

// ---- weighted adapters ---------------------------------------------------------------------------

class WeightedAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(44);
    model = TinyModel();
    peft = std::make_unique<PeftModel>(model.ptr(), LoraConfig().r(2).lora_alpha(4).target_modules({"q_proj", "v_proj"}));
    peft->add_adapter("b", LoraConfig().r(2).lora_alpha(2).target_modules({"q_proj"}));
    randomize_all_b(*model);
  }
  LinearImpl& q0() { return *model->model->layers[0]->as<ranktune::testing::TinyBlockImpl>()->self_attn->q_proj; }
  LinearImpl& v0() { return *model->model->layers[0]->as<ranktune::testing::TinyBlockImpl>()->self_attn->v_proj; }
  Tensor delta(LinearImpl& l, const std::string& n) { return l.delta_weight(n); }

  TinyModel model{nullptr};
  std::unique_ptr<PeftModel> peft;
};

TEST_F(WeightedAdapterTest, CatGivesTheExactWeightedSum) {
  peft->add_weighted_adapter({"default", "b"}, {0.7, 0.3}, "mix",
                             WeightedAdapterOptions().combination_type(CombinationType::cat));
  EXPECT_EQ(peft->config("mix").r(), 4);
  EXPECT_EQ(peft->config("mix").lora_alpha(), 4.0);
  EXPECT_LT(max_abs_diff(delta(q0(), "mix"), 0.7 * delta(q0(), "default") + 0.3 * delta(q0(), "b")), 1e-6);
  // v_proj only has "default": the rows for "b" stay zero.
  EXPECT_LT(max_abs_diff(delta(v0(), "mix"), 0.7 * delta(v0(), "default")), 1e-6);
  EXPECT_THAT(peft->active_adapters(), ElementsAre("default"));
}

TEST_F(WeightedAdapterTest, LinearScalesBothFactorsBySqrtOfWeightTimesScaling) {
  peft->add_weighted_adapter({"default", "b"}, {0.5, 2.0}, "lin",
                             WeightedAdapterOptions().combination_type(CombinationType::linear));
  const Adapter& d = q0().adapter("default");
  const Adapter& b = q0().adapter("b");
  const double wd = std::sqrt(0.5 * d.scaling), wb = std::sqrt(2.0 * b.scaling);
  const Tensor A = wd * d.lora_A + wb * b.lora_A;
  const Tensor B = wd * d.lora_B + wb * b.lora_B;
  EXPECT_LT(max_abs_diff(delta(q0(), "lin"), B.mm(A)), 1e-6);
}

TEST_F(WeightedAdapterTest, SvdTruncatesTheCombinedDelta) {
  peft->add_weighted_adapter({"default", "b"}, {1.0, 1.0}, "svd",
                             WeightedAdapterOptions().combination_type(CombinationType::svd).svd_rank(4));
  const Adapter& d = q0().adapter("default");
  const Adapter& b = q0().adapter("b");
  // PEFT's svd weights each delta by w·s, and the delta already holds s.
  const Tensor target = d.scaling * delta(q0(), "default") + b.scaling * delta(q0(), "b");
  EXPECT_LT(max_abs_diff(delta(q0(), "svd"), target), 1e-4);  // rank 4 holds both rank-2 parts
  peft->add_weighted_adapter({"default", "b"}, {1.0, 1.0}, "svd1",
                             WeightedAdapterOptions().combination_type(CombinationType::svd).svd_rank(1));
  auto [u, s, vh] = at::linalg_svd(target, false);
  EXPECT_LT(max_abs_diff(delta(q0(), "svd1"), s[0].item<double>() * u.select(1, 0).unsqueeze(1) * vh[0].unsqueeze(0)), 1e-4);
}

TEST_F(WeightedAdapterTest, RefusesDoraAndUnknownNames) {
  peft->add_adapter("dora", LoraConfig().r(2).target_modules({"q_proj"}).use_dora(true));
  EXPECT_THROW(peft->add_weighted_adapter({"default", "dora"}, {1, 1}, "x"), ranktune::Error);
  EXPECT_THROW(peft->add_weighted_adapter({"default", "nope"}, {1, 1}, "x"), ranktune::Error);
  EXPECT_FALSE(q0().has_adapter("x"));
  EXPECT_THROW(peft->add_weighted_adapter({"default", "b"}, {-1, 1}, "x",
                                          WeightedAdapterOptions().combination_type(CombinationType::linear)),
               ranktune::Error);
  EXPECT_FALSE(q0().has_adapter("x"));
  EXPECT_THROW(parse_combination_type("ties"), ranktune::Error);
}

}  // namespace
