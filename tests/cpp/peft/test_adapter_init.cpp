// Adapter initialisation: PEFT's defaults, and PiSSA/OLoRA leaving the output unchanged.

#include "peft/adapter_init.h"
#include "ranktune/core/error.h"
#include "ranktune/peft/linear.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <cmath>

using namespace ranktune::peft;
using ranktune::testing::max_abs_diff;
using torch::Tensor;

namespace {

TEST(InitTest, DefaultIsKaimingUniformAAndZeroB) {
  torch::manual_seed(31);
  Linear layer(LinearOptions(400, 300));
  layer->add_adapter("default", AdapterOptions().r(16));
  const Adapter& a = layer->adapter("default");
  EXPECT_EQ(a.lora_B.abs().max().item<double>(), 0.0);
  const double bound = 1.0 / std::sqrt(400.0);
  EXPECT_LE(a.lora_A.abs().max().item<double>(), bound);
  EXPECT_GT(a.lora_A.abs().max().item<double>(), 0.95 * bound);
  // U(-b, b) has standard deviation b / sqrt(3).
  EXPECT_NEAR(a.lora_A.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound);
}

TEST(InitTest, GaussianHasStdOneOverR) {
  torch::manual_seed(32);
  Linear layer(LinearOptions(512, 64));
  layer->add_adapter("default", AdapterOptions().r(8).init_lora_weights(LoraInit::parse("gaussian")));
  const Adapter& a = layer->adapter("default");
  EXPECT_NEAR(a.lora_A.std().item<double>(), 1.0 / 8.0, 0.01);
  EXPECT_EQ(a.lora_B.abs().max().item<double>(), 0.0);
}

TEST(InitTest, FalseLeavesBothFactorsRandom) {
  Linear layer(LinearOptions(32, 16));
  layer->add_adapter("default", AdapterOptions().r(4).init_lora_weights(LoraInit::parse("false")));
  const Adapter& a = layer->adapter("default");
  EXPECT_GT(a.lora_B.abs().max().item<double>(), 0.0);
  EXPECT_LE(a.lora_B.abs().max().item<double>(), 1.0 / std::sqrt(4.0));
}

struct InitCase {
  const char* init;
  bool dora;
  bool fan_in_fan_out;
};

class InitPreservesOutput : public ::testing::TestWithParam<InitCase> {};

TEST_P(InitPreservesOutput, OutputAtInitialisationEqualsBase) {
  const InitCase& c = GetParam();
  torch::manual_seed(33);
  Linear layer(LinearOptions(48, 40).fan_in_fan_out(c.fan_in_fan_out));
  const Tensor x = torch::randn({5, 48});
  const Tensor base = layer->forward(x);
  const Tensor original_weight = layer->weight.clone();
  layer->add_adapter("default", AdapterOptions().r(6).lora_alpha(12).use_dora(c.dora).init_lora_weights(LoraInit::parse(c.init)));
  const Adapter& a = layer->adapter("default");
  EXPECT_GT(a.lora_B.abs().max().item<double>(), 0.0) << "the factors carry part of W";
  EXPECT_GT(max_abs_diff(layer->weight, original_weight), 1e-3) << "the base keeps the residual";
  EXPECT_LT(max_abs_diff(layer->forward(x), base), 1e-5);
  // Merging restores W exactly: residual + s·B A.
  layer->merge();
  if (!c.dora) EXPECT_LT(max_abs_diff(layer->weight, original_weight), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Methods, InitPreservesOutput,
                         ::testing::Values(InitCase{"pissa", false, false}, InitCase{"pissa", true, false},
                                           InitCase{"pissa", false, true}, InitCase{"pissa_niter_4", false, false},
                                           InitCase{"olora", false, false}, InitCase{"olora", true, false},
                                           InitCase{"olora", false, true}));

TEST(InitTest, PissaTakesTheTopSingularDirections) {
  torch::manual_seed(34);
  Linear layer(LinearOptions(30, 20).bias(false));
  const Tensor w = layer->weight.clone();
  layer->add_adapter("default", AdapterOptions().r(3).lora_alpha(3).init_lora_weights(LoraInit::parse("pissa")));
  const Adapter& a = layer->adapter("default");
  auto [u, s, vh] = at::linalg_svd(w, false);
  const Tensor top = u.narrow(1, 0, 3).mm(at::diag(s.narrow(0, 0, 3))).mm(vh.narrow(0, 0, 3));
  EXPECT_LT(max_abs_diff(a.scaling * a.lora_B.mm(a.lora_A), top), 1e-4);
}

TEST(InitTest, RandomizedSvdRecoversALowRankMatrix) {
  torch::manual_seed(35);
  const Tensor m = torch::randn({60, 5}).mm(torch::randn({5, 40}));
  const LowRankSvd svd = svd_lowrank(m, 5, 2);
  EXPECT_LT(max_abs_diff(svd.U.mm(at::diag(svd.S)).mm(svd.V.t()), m), 1e-3);
  const LowRankSvd wide = svd_lowrank(m.t(), 5, 2);
  EXPECT_LT(max_abs_diff(wide.U.mm(at::diag(wide.S)).mm(wide.V.t()), m.t()), 1e-3);
}

TEST(InitTest, RankAboveTheMatrixRankIsRefusedForPissa) {
  Linear layer(LinearOptions(8, 4));
  const Tensor original = layer->weight.clone();
  try {
    layer->add_adapter("default", AdapterOptions().r(6).init_lora_weights(LoraInit::parse("pissa")));
    FAIL() << "expected an error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("r <= min(in_features, out_features) = 4"));
  }
  EXPECT_FALSE(layer->has_adapter("default"));
  EXPECT_TRUE(at::equal(layer->weight, original));
}

}  // namespace
