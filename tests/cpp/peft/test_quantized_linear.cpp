// peft::Linear with a quantized base: the same outputs and input gradients as a dense layer
// holding the dequantized weight, adapters (LoRA, DoRA) on top, merge, and what is refused.

#include "ranktune/peft/functional.h"
#include "ranktune/peft/linear.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace ranktune::peft {
namespace {

using torch::Tensor;
using ranktune::testing::error_of;
using ranktune::testing::max_abs_diff;

struct Case {
  QuantFormat format;
  bool double_quant;
};

class QuantizedLinearTest : public ::testing::TestWithParam<Case> {};

// A quantized layer and a dense twin holding its dequantized weight (same bias).
std::pair<Linear, Linear> quantized_and_dense(const Case& c, int64_t in = 70, int64_t out = 45) {
  at::manual_seed(7);
  Linear q(LinearOptions(in, out).bias(true));
  q->quantize_(c.format, c.double_quant);
  Linear dense(LinearOptions(in, out).bias(true));
  at::NoGradGuard no_grad;
  dense->weight.copy_(q->dense_weight(at::kFloat));
  dense->bias.copy_(q->bias);
  return {q, dense};
}

TEST_P(QuantizedLinearTest, ForwardAndInputGradientEqualTheDequantizedWeight) {
  auto [q, dense] = quantized_and_dense(GetParam());
  EXPECT_FALSE(q->weight.defined());
  for (const auto& p : q->named_parameters()) EXPECT_NE(p.key(), "weight") << "the quantized weight is no parameter";
  const Tensor x = at::randn({3, 5, 70}).requires_grad_(true);
  const Tensor x_ref = x.detach().clone().requires_grad_(true);
  const Tensor g = at::randn({3, 5, 45});
  const Tensor y = q->forward(x);
  const Tensor y_ref = dense->forward(x_ref);
  EXPECT_LT(max_abs_diff(y, y_ref), 1e-5);
  y.backward(g);
  y_ref.backward(g);
  EXPECT_LT(max_abs_diff(x.grad(), x_ref.grad()), 1e-5);
  // dx = g W with the dequantized W, whole or in row chunks.
  const Tensor w = q->dense_weight(at::kFloat);
  EXPECT_LT(max_abs_diff(x.grad(), g.reshape({-1, 45}).mm(w).view({3, 5, 70})), 1e-5);
  for (int64_t chunk : {1, 7, 45}) {
    const Tensor xc = x.detach().clone().requires_grad_(true);
    const Tensor yc = functional::quantized_linear(xc, q->quantized_weight(), q->bias, {}, chunk);
    EXPECT_LT(max_abs_diff(yc, y_ref), 1e-5) << chunk;
    yc.backward(g);
    EXPECT_LT(max_abs_diff(xc.grad(), x_ref.grad()), 1e-5) << chunk;
  }
  // forward_add's residual, and one row (decoding).
  const Tensor residual = at::randn({3, 5, 45});
  EXPECT_LT(max_abs_diff(q->forward_add(x.detach(), residual), dense->forward_add(x.detach(), residual)), 1e-5);
  EXPECT_LT(max_abs_diff(q->forward(x.detach()[0][0]), dense->forward(x.detach()[0][0])), 1e-5);
}

TEST_P(QuantizedLinearTest, LoraAndDoraOnAQuantizedBaseEqualThemOnTheDequantizedWeight) {
  for (bool dora : {false, true}) {
    auto [q, dense] = quantized_and_dense(GetParam());
    const auto options = AdapterOptions().r(4).lora_alpha(8).use_dora(dora);
    q->add_adapter("default", options);
    at::NoGradGuard no_grad;
    const Adapter& a = q->adapter("default");
    a.lora_B.normal_(0, 0.1);  // a non-zero update
    dense->add_adapter_from_weights("default", options, a.lora_A, a.lora_B,
                                    dora ? dense->dora_weight_norm(a) : Tensor());
    if (dora) {
      // DoRA's norm comes from dequantized row chunks: it equals the dense layer's.
      EXPECT_LT(max_abs_diff(q->dora_weight_norm(a), dense->dora_weight_norm(dense->adapter("default"))), 1e-5);
      q->adapter("default").magnitude.copy_(dense->adapter("default").magnitude);
    }
    at::GradMode::set_enabled(true);
    const Tensor x = at::randn({4, 70}).requires_grad_(true);
    const Tensor x_ref = x.detach().clone().requires_grad_(true);
    const Tensor y = q->forward(x), y_ref = dense->forward(x_ref);
    EXPECT_LT(max_abs_diff(y, y_ref), 1e-5) << (dora ? "dora" : "lora");
    y.square().sum().backward();
    y_ref.square().sum().backward();
    EXPECT_LT(max_abs_diff(x.grad(), x_ref.grad()), 1e-4);
    EXPECT_LT(max_abs_diff(q->adapter("default").lora_B.grad(), dense->adapter("default").lora_B.grad()), 1e-4);
    if (dora) {
      EXPECT_LT(max_abs_diff(q->adapter("default").magnitude.grad(), dense->adapter("default").magnitude.grad()), 1e-4);
    }
    at::GradMode::set_enabled(false);
  }
}

TEST_P(QuantizedLinearTest, MergeDequantizesThenFoldsTheAdapterIn) {
  auto [q, dense] = quantized_and_dense(GetParam());
  q->add_adapter("default", AdapterOptions().r(4).lora_alpha(8));
  {
    at::NoGradGuard no_grad;
    q->adapter("default").lora_B.normal_(0, 0.1);
  }
  const Tensor x = at::randn({4, 70});
  at::NoGradGuard no_grad;
  const Tensor before = q->forward(x);
  const Tensor expected = dense->weight + q->delta_weight("default");
  q->merge(/*safe=*/true);
  EXPECT_FALSE(q->quantized());
  EXPECT_LT(max_abs_diff(q->weight, expected), 1e-6);
  EXPECT_LT(max_abs_diff(q->forward(x), before), 1e-5);
  q->unmerge();
  EXPECT_LT(max_abs_diff(q->weight, dense->weight), 1e-6) << "unmerge leaves the dequantized weight";
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizedLinearTest,
                         ::testing::Values(Case{QuantFormat::int8, false}, Case{QuantFormat::nf4, false},
                                           Case{QuantFormat::nf4, true}),
                         [](const auto& info) {
                           return quant_format_name(info.param.format) + (info.param.double_quant ? "_dq" : "");
                         });

TEST(QuantizedLinearTest, FanInFanOutLayersQuantizePerOutputChannel) {
  at::manual_seed(3);
  const Tensor w = at::randn({70, 45});  // GPT-2 Conv1D layout [in, out]
  Linear q(w.clone(), Tensor(), /*fan_in_fan_out=*/true);
  q->quantize_(QuantFormat::int8);
  EXPECT_EQ(q->quantized_weight().rows(), 45);
  const Tensor x = at::randn({2, 70});
  EXPECT_LT(max_abs_diff(q->forward(x), x.mm(q->dense_weight(at::kFloat).t())), 1e-5);
  EXPECT_LT(max_abs_diff(q->dense_weight(at::kFloat), w.t()), w.abs().max().item<double>() / 254 + 1e-6);
}

TEST(QuantizedLinearTest, QuantizeNewLinearsQuantizesLayersAsTheyAreBuilt) {
  Linear plain(LinearOptions(8, 4));
  {
    QuantizeNewLinears scope(QuantFormat::nf4, /*double_quant=*/true);
    Linear q(LinearOptions(8, 4));
    EXPECT_TRUE(q->quantized());
    EXPECT_TRUE(q->quantized_weight().double_quant());
    {
      QuantizeNewLinears off(QuantFormat::none);
      EXPECT_FALSE(Linear(LinearOptions(8, 4))->quantized());
    }
    const Tensor embeddings = at::randn({4, 8});
    EXPECT_FALSE(Linear(LinearOptions(8, 4), embeddings)->quantized()) << "a tied weight stays as it is";
    EXPECT_TRUE(Linear(LinearOptions(8, 4))->quantized());
  }
  EXPECT_FALSE(plain->quantized());
  EXPECT_FALSE(Linear(LinearOptions(8, 4))->quantized());
}

TEST(QuantizedLinearTest, BaseWeightBytesShrinkFourAndAboutSevenFold) {
  const int64_t in = 576, out = 1536;  // SmolLM2-135M's gate_proj
  Linear dense(LinearOptions(in, out).bias(false));
  const double fp32 = static_cast<double>(dense->base_weight_nbytes());
  EXPECT_EQ(fp32, 4.0 * in * out);
  Linear int8(LinearOptions(in, out).bias(false));
  int8->quantize_(QuantFormat::int8);
  Linear nf4(LinearOptions(in, out).bias(false));
  nf4->quantize_(QuantFormat::nf4);
  EXPECT_GT(fp32 / int8->base_weight_nbytes(), 3.9);
  EXPECT_GT(fp32 / nf4->base_weight_nbytes(), 7.0);
}

TEST(QuantizedLinearTest, RefusesWhatAQuantizedBaseCannotDo) {
  Linear q(LinearOptions(16, 16));
  q->quantize_(QuantFormat::int8);
  EXPECT_NE(error_of([&] { q->quantize_(QuantFormat::nf4); }).find("quantized already"), std::string::npos);
  std::string message = error_of([&] {
    q->add_adapter("pissa", AdapterOptions().r(2).init_lora_weights(LoraInit::parse("pissa")));
  });
  EXPECT_NE(message.find("stored quantized"), std::string::npos) << message;
  EXPECT_FALSE(q->has_adapter("pissa"));
  Linear tied(LinearOptions(8, 4), at::randn({4, 8}));
  EXPECT_NE(error_of([&] { tied->quantize_(QuantFormat::int8); }).find("another module"), std::string::npos);
  Linear trains(LinearOptions(8, 4));
  trains->weight.set_requires_grad(true);
  EXPECT_NE(error_of([&] { trains->quantize_(QuantFormat::int8); }).find("trains"), std::string::npos);
}

}  // namespace
}  // namespace ranktune::peft
