// train/optimizer: which trainable parameters go to which AdamW group, with what learning rate and
// weight decay (LoRA+ gives B and the adapter's vectors lr · lora_plus_ratio).

#include "ranktune/peft/linear.h"
#include "ranktune/train/config.h"
#include "test_util.h"
#include "train/optimizer.h"

#include <gmock/gmock.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

using namespace ranktune;

namespace {

// A model with one parameter of every kind the optimizer sorts: a trained matrix (full
// fine-tuning), a norm vector, a frozen matrix, and a DoRA-adapted projection with a trained bias.
struct MixedModelImpl : torch::nn::Module {
  MixedModelImpl() {
    embed = register_parameter("embed_tokens", torch::randn({10, 8}));
    norm = register_parameter("norm", torch::ones({8}));
    frozen = register_parameter("frozen", torch::randn({8, 8}), /*requires_grad=*/false);
    q_proj = register_module("q_proj", peft::Linear(peft::LinearOptions(8, 6).bias(true)));
    q_proj->add_adapter("default", peft::AdapterOptions().r(2).lora_alpha(4).use_dora(true));
    q_proj->bias.set_requires_grad(true);  // bias="all"
  }
  torch::Tensor embed, norm, frozen;
  peft::Linear q_proj{nullptr};
};
TORCH_MODULE(MixedModel);

train::TrainSection settings(double lora_plus_ratio) {
  train::TrainSection s;
  s.lr = 1e-3;
  s.weight_decay = 0.1;
  s.adam_beta1 = 0.9;
  s.adam_beta2 = 0.999;
  s.adam_epsilon = 1e-8;
  s.lora_plus_ratio = lora_plus_ratio;
  return s;
}

struct Group {
  std::vector<std::string> names;
  double lr;
  double weight_decay;
};

// The optimizer's groups, each with the names of its parameters.
std::vector<Group> groups_of(const train::TrainingOptimizer& optimizer, torch::nn::Module& model) {
  std::vector<Group> out;
  for (const auto& g : optimizer.adamw().param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(g.options());
    Group group{{}, options.lr(), options.weight_decay()};
    for (const auto& p : g.params()) {
      for (const auto& item : model.named_parameters()) {
        if (item.value().is_same(p)) group.names.push_back(item.key());
      }
    }
    out.push_back(group);
  }
  return out;
}

using Names = std::vector<std::string>;

TEST(OptimizerGroupsTest, LoraPlusGivesBAndAdapterVectorsTheRatioAndVectorsNoDecay) {
  MixedModel model;
  train::TrainingOptimizer optimizer(*model, settings(16.0));
  const auto groups = groups_of(optimizer, *model);
  ASSERT_EQ(groups.size(), 4u);
  // Matrices: lr, decay.
  EXPECT_EQ(groups[0].names, (Names{"embed_tokens", "q_proj.lora_A.default.weight"}));
  EXPECT_DOUBLE_EQ(groups[0].lr, 1e-3);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.1);
  // Vectors that are not the adapter's: lr, no decay.
  EXPECT_EQ(groups[1].names, (Names{"norm", "q_proj.bias"}));
  EXPECT_DOUBLE_EQ(groups[1].lr, 1e-3);
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 0.0);
  // LoRA B: lr · 16, decay.
  EXPECT_EQ(groups[2].names, (Names{"q_proj.lora_B.default.weight"}));
  EXPECT_DOUBLE_EQ(groups[2].lr, 16e-3);
  EXPECT_DOUBLE_EQ(groups[2].weight_decay, 0.1);
  // The adapter's vectors (DoRA's magnitude): lr · 16, no decay.
  EXPECT_EQ(groups[3].names, (Names{"q_proj.lora_magnitude_vector.default.weight"}));
  EXPECT_DOUBLE_EQ(groups[3].lr, 16e-3);
  EXPECT_DOUBLE_EQ(groups[3].weight_decay, 0.0);
  // The frozen matrix and the frozen base weight are in no group.
  EXPECT_EQ(optimizer.parameters().size(), 6u);
  EXPECT_EQ(optimizer.parameter_count(), 10 * 8 + 8 + 6 + 2 * 8 + 6 * 2 + 6);

  // The schedule scales every group and keeps the ratio.
  optimizer.set_lr_multiplier(0.25);
  const auto scaled = groups_of(optimizer, *model);
  EXPECT_DOUBLE_EQ(scaled[0].lr, 0.25e-3);
  EXPECT_DOUBLE_EQ(scaled[2].lr, 4e-3);
  EXPECT_DOUBLE_EQ(scaled[3].lr, 4e-3);
  EXPECT_DOUBLE_EQ(optimizer.lr(), 0.25e-3);
}

TEST(OptimizerGroupsTest, WithoutLoraPlusBIsAPlainMatrixAndTheMagnitudeAPlainVector) {
  MixedModel model;
  train::TrainingOptimizer optimizer(*model, settings(0.0));
  const auto groups = groups_of(optimizer, *model);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].names, (Names{"embed_tokens", "q_proj.lora_A.default.weight", "q_proj.lora_B.default.weight"}));
  EXPECT_DOUBLE_EQ(groups[0].lr, 1e-3);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.1);
  EXPECT_EQ(groups[1].names, (Names{"norm", "q_proj.bias", "q_proj.lora_magnitude_vector.default.weight"}));
  EXPECT_DOUBLE_EQ(groups[1].lr, 1e-3);
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 0.0);
}

TEST(OptimizerGroupsTest, NothingTrainableIsAnError) {
  MixedModel model;
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  EXPECT_THAT(ranktune::testing::error_of([&] { train::TrainingOptimizer(*model, settings(16.0)); }),
              ::testing::HasSubstr("nothing to train"));
}

}  // namespace
