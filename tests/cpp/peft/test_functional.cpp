// The hand-written backward passes against central finite differences (double precision), and
// DoRA's low-rank norm against the materialised one — including at a size where an out×in
// temporary would be 1 GiB.

#include "ranktune/peft/functional.h"
#include "ranktune/peft/linear.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

using namespace ranktune::peft;
using ranktune::testing::max_abs_diff;
using ranktune::testing::numeric_gradient;
using torch::Tensor;

namespace {

constexpr double kGradTolerance = 1e-7;

struct GradCase {
  bool dora;
  bool bias;
  bool rslora;
  double dropout;
};

std::string case_name(const ::testing::TestParamInfo<GradCase>& info) {
  const GradCase& c = info.param;
  return std::string(c.dora ? "Dora" : "Lora") + (c.bias ? "Bias" : "NoBias") + (c.rslora ? "Rslora" : "") +
         (c.dropout > 0 ? "Dropout" : "");
}

class FunctionalGradient : public ::testing::TestWithParam<GradCase> {};

// Layer-level check: every trainable tensor (A, B, magnitude, bias, input) of a double-precision
// peft::Linear against finite differences of the same layer. DoRA's norm is a constant by
// definition (DoRA §4.3), so the finite differences are taken with it frozen at its current value.
TEST_P(FunctionalGradient, MatchesFiniteDifferences) {
  const GradCase& c = GetParam();
  torch::manual_seed(11);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  Linear layer(LinearOptions(7, 5).bias(c.bias).dtype(torch::kFloat64));
  layer->add_adapter("default",
                     AdapterOptions().r(3).lora_alpha(5).use_rslora(c.rslora).use_dora(c.dora).lora_dropout(c.dropout));
  Adapter& a = layer->adapter("default");
  {
    at::NoGradGuard no_grad;
    a.lora_B.normal_(0.0, 0.5);
    if (c.dora) a.magnitude.mul_(1.0 + 0.2 * torch::rand({5}, f64));
  }
  if (c.bias) layer->bias.set_requires_grad(true);
  const Tensor x = torch::randn({2, 3, 7}, f64).requires_grad_(true);
  const Tensor probe = torch::randn({2, 3, 5}, f64);
  const Tensor frozen_norm = layer->dora_weight_norm(a);

  // With dropout the same mask is drawn on every evaluation by reseeding.
  auto output = [&]() -> Tensor {
    torch::manual_seed(99);
    if (!c.dora) return layer->forward(x);
    const Tensor xa = c.dropout > 0 ? at::dropout(x, c.dropout, true) : x;
    // PEFT's dropout path: Wx + b + (c - 1) W·drop(x) + c·s·B A drop(x).
    const Tensor base_xa = at::linear(xa, layer->weight);
    const Tensor rest = c.dropout > 0 ? at::linear(x, layer->weight, layer->bias) - base_xa
                                      : (layer->bias.defined() ? layer->bias : Tensor());
    return functional::dora_update(rest, base_xa, xa, a.lora_A, a.lora_B, a.magnitude, frozen_norm, a.scaling);
  };
  auto loss = [&]() -> double {
    at::NoGradGuard no_grad;
    return (output() * probe).sum().item<double>();
  };

  // The layer's own forward must agree with the frozen-norm function it is checked against.
  {
    at::NoGradGuard no_grad;
    torch::manual_seed(99);
    const Tensor from_layer = layer->forward(x);
    EXPECT_LT(max_abs_diff(from_layer, output()), 1e-12);
  }
  layer->train(true);
  torch::manual_seed(99);
  (layer->forward(x) * probe).sum().backward();

  std::vector<std::pair<std::string, Tensor>> checked = {{"lora_A", a.lora_A}, {"lora_B", a.lora_B}, {"x", x}};
  if (c.dora) checked.emplace_back("magnitude", a.magnitude);
  if (c.bias) checked.emplace_back("bias", layer->bias);
  for (auto& [name, t] : checked) {
    ASSERT_TRUE(t.grad().defined()) << name;
    const Tensor numeric = numeric_gradient(loss, t);
    EXPECT_LT(max_abs_diff(t.grad(), numeric), kGradTolerance) << name;
  }
  EXPECT_FALSE(layer->weight.grad().defined());
}

INSTANTIATE_TEST_SUITE_P(Adapters, FunctionalGradient,
                         ::testing::Values(GradCase{false, false, false, 0}, GradCase{false, true, false, 0},
                                           GradCase{false, true, true, 0}, GradCase{false, false, false, 0.3},
                                           GradCase{true, false, false, 0}, GradCase{true, true, false, 0},
                                           GradCase{true, true, true, 0}, GradCase{true, false, true, 0},
                                           GradCase{true, true, false, 0.3}),
                         case_name);

TEST(FunctionalTest, DoraUpdateWithAZeroMagnitudeStillHasGradients) {
  // A zero in m rules out recovering z from y; the exact path saves z instead.
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const Tensor x = torch::randn({4, 6}, f64);
  const Tensor w = torch::randn({3, 6}, f64);
  const Tensor A = torch::randn({2, 6}, f64).requires_grad_(true);
  const Tensor B = torch::randn({3, 2}, f64).requires_grad_(true);
  const Tensor m = torch::tensor({1.5, 0.0, 0.7}, f64).requires_grad_(true);
  const Tensor n = torch::tensor({2.0, 1.0, 0.5}, f64);
  const Tensor probe = torch::randn({4, 3}, f64);
  auto loss = [&] {
    at::NoGradGuard no_grad;
    return (functional::dora_update({}, x.mm(w.t()), x, A, B, m, n, 0.5) * probe).sum().item<double>();
  };
  (functional::dora_update({}, x.mm(w.t()), x, A, B, m, n, 0.5) * probe).sum().backward();
  EXPECT_LT(max_abs_diff(m.grad(), numeric_gradient(loss, m)), kGradTolerance);
  EXPECT_LT(max_abs_diff(A.grad(), numeric_gradient(loss, A)), kGradTolerance);
}

TEST(FunctionalTest, LoraUpdateSavesNoOutSizedTensor) {
  // Saved for backward: x and h = x Aᵀ (plus A and B, which are parameters). Checked by size.
  const Tensor result = torch::randn({64, 256});
  const Tensor x = torch::randn({64, 32});
  const Tensor A = torch::randn({4, 32}, torch::requires_grad());
  const Tensor B = torch::randn({256, 4}, torch::requires_grad());
  ranktune::testing::AllocationTracker tracker;
  Tensor y = functional::lora_update(result, x, A, B, 2.0);
  const int64_t live_after_forward = tracker.current_bytes();
  // The output itself (64·256 floats) plus h (64·4 floats); nothing else stays alive.
  EXPECT_LE(live_after_forward, static_cast<int64_t>((64 * 256 + 64 * 4) * sizeof(float)) + 4096);
}

// ---- DoRA norm -------------------------------------------------------------------------------------

TEST(DoraNorm, LowRankNormEqualsMaterializedNorm) {
  torch::manual_seed(21);
  const Tensor w = torch::randn({512, 384});
  const Tensor A = torch::randn({16, 384}) * 0.05;
  const Tensor B = torch::randn({512, 16}) * 0.05;
  const double s = 2.0;
  const Tensor row_sq = at::linalg_vector_norm(w, 2, {1}, false, c10::nullopt).square();
  const Tensor low_rank = functional::dora_weight_norm(w, row_sq, A, B, s);
  const Tensor materialized = at::linalg_vector_norm(w + s * B.mm(A), 2, {1}, false, c10::nullopt);
  EXPECT_LT(((low_rank - materialized).abs() / materialized).max().item<double>(), 1e-5);
}

TEST(DoraNorm, ZeroRowGivesZeroNotNaN) {
  Linear layer(LinearOptions(4, 3).bias(false));
  {
    at::NoGradGuard no_grad;
    layer->weight[1].zero_();
  }
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  const Tensor y = layer->forward(torch::randn({2, 4}));
  EXPECT_TRUE(at::isfinite(y).all().item<bool>());
  EXPECT_EQ(y.select(1, 1).abs().max().item<double>(), 0.0);
}

TEST(DoraNorm, CacheFollowsChangesToTheBaseWeight) {
  Linear layer(LinearOptions(6, 4));
  const Tensor first = layer->weight_row_sq_norm().clone();
  {
    at::NoGradGuard no_grad;
    layer->weight.mul_(2.0);  // in place: the version counter moves
  }
  EXPECT_LT(max_abs_diff(layer->weight_row_sq_norm(), first * 4), 1e-5);
}

TEST(DoraNorm, LargeLayerTrainsWithoutAnOutByInTemporary) {
  // out = in = 16384: W alone is 1 GiB in fp32, and so would be any out×in temporary.
  constexpr int64_t kSize = 16384;
  Linear layer(LinearOptions(kSize, kSize).bias(false));
  const int64_t weight_bytes = kSize * kSize * static_cast<int64_t>(sizeof(float));
  ranktune::testing::AllocationTracker tracker;
  layer->add_adapter("default", AdapterOptions().r(8).use_dora(true));
  {
    at::NoGradGuard no_grad;
    layer->adapter("default").lora_B.normal_(0.0, 0.01);
  }
  const Tensor x = torch::randn({2, 3, kSize}, torch::requires_grad());
  layer->forward(x).square().mean().backward();
  ASSERT_TRUE(layer->adapter("default").lora_A.grad().defined());
  ASSERT_TRUE(layer->adapter("default").magnitude.grad().defined());
  const int64_t peak = tracker.peak_bytes();
  RecordProperty("peak_growth_bytes", std::to_string(peak));
  EXPECT_LT(peak, weight_bytes / 16) << "peak allocation growth " << peak << " bytes";
}

}  // namespace

namespace {

// The memory checks above are only as good as the tracker: it must see a large temporary.
TEST(FunctionalTest, AllocationTrackerSeesLargeTemporaries) {
  ranktune::testing::AllocationTracker tracker;
  { const Tensor t = at::empty({1024, 1024}); }
  EXPECT_GE(tracker.peak_bytes(), 1024 * 1024 * 4);
  EXPECT_EQ(tracker.current_bytes(), 0);
}

}  // namespace

namespace {

// forward_add(x, r) is r + forward(x), with the same gradients — including DoRA's, whose backward
// then recovers its activations from the residual and the sum instead of keeping them.
TEST(FunctionalTest, ForwardAddEqualsForwardPlusResidualWithTheSameGradients) {
  for (const bool dora : {false, true}) {
    torch::manual_seed(71);
    const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
    Linear layer(LinearOptions(7, 5).bias(false).dtype(torch::kFloat64));
    layer->add_adapter("default", AdapterOptions().r(3).lora_alpha(5).use_dora(dora));
    Adapter& a = layer->adapter("default");
    {
      at::NoGradGuard no_grad;
      a.lora_B.normal_(0.0, 0.5);
    }
    const Tensor x = torch::randn({2, 3, 7}, f64).requires_grad_(true);
    const Tensor residual = torch::randn({2, 3, 5}, f64).requires_grad_(true);
    const Tensor probe = torch::randn({2, 3, 5}, f64);
    std::vector<Tensor> wrt = {x, residual, a.lora_A, a.lora_B};
    if (dora) wrt.push_back(a.magnitude);
    const auto fused = torch::autograd::grad({(layer->forward_add(x, residual) * probe).sum()}, wrt);
    const auto plain = torch::autograd::grad({((layer->forward(x) + residual) * probe).sum()}, wrt);
    EXPECT_LT(max_abs_diff(layer->forward_add(x, residual), layer->forward(x) + residual), 1e-12) << dora;
    for (size_t i = 0; i < wrt.size(); ++i) EXPECT_LT(max_abs_diff(fused[i], plain[i]), 1e-12) << dora << " " << i;
  }
}

}  // namespace

namespace {

// Projections reading the same x (q/k/v) with their adapters' x Aᵢᵀ from one stacked GEMM give
// the outputs and gradients of their own forwards; where sharing would change the math
// (dropout masks, several adapters, merged weights) no shared product is offered.
TEST(FunctionalTest, StackedAdapterInputsMatchSeparateForwardsWithTheSameGradients) {
  for (const bool dora : {false, true}) {
    torch::manual_seed(73);
    const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
    std::vector<Linear> layers = {Linear(LinearOptions(7, 5).bias(true).dtype(torch::kFloat64)),
                                  Linear(LinearOptions(7, 3).bias(false).dtype(torch::kFloat64)),
                                  Linear(LinearOptions(7, 3).bias(false).dtype(torch::kFloat64))};
    std::vector<LinearImpl*> raw;
    std::vector<Tensor> wrt;
    const Tensor x = torch::randn({2, 3, 7}, f64).requires_grad_(true);
    wrt.push_back(x);
    for (size_t i = 0; i < layers.size(); ++i) {
      // Ranks differ per layer (rank_pattern), so the stacked product is split unevenly.
      layers[i]->add_adapter("default", AdapterOptions().r(2 + static_cast<int64_t>(i)).lora_alpha(5).use_dora(dora));
      Adapter& a = layers[i]->adapter("default");
      {
        at::NoGradGuard no_grad;
        a.lora_B.normal_(0.0, 0.5);
      }
      raw.push_back(layers[i].get());
      wrt.insert(wrt.end(), {a.lora_A, a.lora_B});
      if (dora) wrt.push_back(a.magnitude);
    }
    const std::vector<Tensor> probes = {torch::randn({2, 3, 5}, f64), torch::randn({2, 3, 3}, f64),
                                        torch::randn({2, 3, 3}, f64)};
    const std::vector<Tensor> h = stacked_adapter_inputs(raw, x);
    ASSERT_EQ(h.size(), 3u);
    Tensor stacked_loss = torch::zeros({}, f64), plain_loss = torch::zeros({}, f64);
    for (size_t i = 0; i < layers.size(); ++i) {
      const Tensor base = at::linear(x, layers[i]->weight);
      const Tensor y = layers[i]->forward_with_base(x, base, h[i]);
      EXPECT_LT(max_abs_diff(y, layers[i]->forward(x)), 1e-12) << dora << " " << i;
      stacked_loss = stacked_loss + (y * probes[i]).sum();
      plain_loss = plain_loss + (layers[i]->forward(x) * probes[i]).sum();
    }
    const auto stacked = torch::autograd::grad({stacked_loss}, wrt);
    const auto plain = torch::autograd::grad({plain_loss}, wrt);
    for (size_t i = 0; i < wrt.size(); ++i) EXPECT_LT(max_abs_diff(stacked[i], plain[i]), 1e-12) << dora << " " << i;
  }

  torch::manual_seed(74);
  Linear a(LinearOptions(4, 4)), b(LinearOptions(4, 4));
  a->add_adapter("default", AdapterOptions().r(2).lora_dropout(0.1));
  b->add_adapter("default", AdapterOptions().r(2));
  const Tensor x = torch::randn({3, 4});
  a->train(true);
  EXPECT_TRUE(stacked_adapter_inputs({a.get(), b.get()}, x).empty()) << "dropout masks differ per layer";
  a->train(false);
  EXPECT_EQ(stacked_adapter_inputs({a.get(), b.get()}, x).size(), 2u) << "no dropout in eval";
  b->add_adapter("second", AdapterOptions().r(2));
  b->set_active_adapters({"default", "second"});
  EXPECT_TRUE(stacked_adapter_inputs({a.get(), b.get()}, x).empty()) << "two active adapters";
  b->set_active_adapters({"default"});
  b->merge();
  EXPECT_TRUE(stacked_adapter_inputs({a.get(), b.get()}, x).empty()) << "merged";
}

}  // namespace
