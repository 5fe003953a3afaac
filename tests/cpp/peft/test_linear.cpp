// peft::Linear: forward against the explicit formulas, several adapters, enable/disable, delete,
// merge/unmerge, clone and printing.

#include "ranktune/core/error.h"
#include "ranktune/peft/linear.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <sstream>

using namespace ranktune::peft;
using ranktune::testing::max_abs_diff;
using torch::Tensor;

namespace {

// Puts random values in B (it starts at zero) so that the update is not a no-op.
void randomize_b(LinearImpl& layer, const std::string& name) {
  at::NoGradGuard no_grad;
  layer.adapter(name).lora_B.normal_(0.0, 0.5);
}

// The row norm as PEFT computes it: materialise W + s·B A, take the norm of each row.
Tensor materialized_norm(const LinearImpl& layer, const Adapter& a) {
  return at::linalg_vector_norm(layer.weight_out_in() + a.scaling * a.lora_B.mm(a.lora_A), 2, {1}, false,
                                c10::nullopt);
}

Tensor lora_reference(const LinearImpl& layer, const Adapter& a, const Tensor& x) {
  return at::linear(x, layer.weight_out_in(), layer.bias) + a.scaling * x.matmul(a.lora_A.t()).matmul(a.lora_B.t());
}

Tensor dora_reference(const LinearImpl& layer, const Adapter& a, const Tensor& x) {
  const Tensor c = a.magnitude / materialized_norm(layer, a).detach();
  const Tensor z = x.matmul(layer.weight_out_in().t()) + a.scaling * x.matmul(a.lora_A.t()).matmul(a.lora_B.t());
  return layer.bias.defined() ? c * z + layer.bias : c * z;
}

struct ForwardCase {
  bool bias;
  bool dora;
  bool rslora;
  bool fan_in_fan_out;
};

class LinearForward : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(LinearForward, EqualsTheExplicitFormula) {
  const ForwardCase& c = GetParam();
  torch::manual_seed(1);
  Linear layer(LinearOptions(12, 7).bias(c.bias).fan_in_fan_out(c.fan_in_fan_out));
  layer->add_adapter("default", AdapterOptions().r(4).lora_alpha(6).use_rslora(c.rslora).use_dora(c.dora));
  randomize_b(*layer, "default");
  const Tensor x = torch::randn({3, 5, 12});
  const Adapter& a = layer->adapter("default");
  EXPECT_DOUBLE_EQ(a.scaling, c.rslora ? 6.0 / 2.0 : 6.0 / 4.0);
  const Tensor expected = c.dora ? dora_reference(*layer, a, x) : lora_reference(*layer, a, x);
  EXPECT_LT(max_abs_diff(layer->forward(x), expected), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Variants, LinearForward,
                         ::testing::Values(ForwardCase{false, false, false, false}, ForwardCase{true, false, false, false},
                                           ForwardCase{true, false, true, false}, ForwardCase{true, false, false, true},
                                           ForwardCase{false, true, false, false}, ForwardCase{true, true, false, false},
                                           ForwardCase{true, true, true, false}, ForwardCase{true, true, false, true}));

TEST(LinearTest, LoraOutputEqualsBaseWhenBIsZero) {
  Linear layer(LinearOptions(8, 5));
  const Tensor x = torch::randn({4, 8});
  const Tensor base = layer->forward(x);
  layer->add_adapter("default", AdapterOptions().r(2));
  EXPECT_EQ(max_abs_diff(layer->forward(x), base), 0.0);
}

TEST(LinearTest, DoraStartsAsTheBaseLayer) {
  Linear layer(LinearOptions(8, 5));
  const Tensor x = torch::randn({4, 8});
  const Tensor base = layer->forward(x);
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  EXPECT_LT(max_abs_diff(layer->adapter("default").magnitude, at::linalg_vector_norm(layer->weight, 2, {1}, false, c10::nullopt)), 1e-6);
  EXPECT_LT(max_abs_diff(layer->forward(x), base), 1e-5);
}

TEST(LinearTest, TwoActiveAdaptersAddTheirUpdates) {
  torch::manual_seed(2);
  Linear layer(LinearOptions(10, 6));
  layer->add_adapter("one", AdapterOptions().r(2).lora_alpha(4));
  layer->add_adapter("two", AdapterOptions().r(3).lora_alpha(3));
  randomize_b(*layer, "one");
  randomize_b(*layer, "two");
  const Tensor x = torch::randn({5, 10});
  const Tensor base = layer->base_forward(x);
  const Tensor d1 = lora_reference(*layer, layer->adapter("one"), x) - base;
  const Tensor d2 = lora_reference(*layer, layer->adapter("two"), x) - base;
  EXPECT_LT(max_abs_diff(layer->forward(x), base + d1 + d2), 1e-5);
  layer->set_active_adapters({"two"});
  EXPECT_LT(max_abs_diff(layer->forward(x), base + d2), 1e-5);
  EXPECT_EQ(layer->active_adapters(), std::vector<std::string>{"two"});
}

TEST(LinearTest, LoraAndDoraAdaptersCombineAsInPeft) {
  // PEFT adds each adapter's delta to the running output; a DoRA delta is (c-1)·W x + c·s·B A x.
  torch::manual_seed(3);
  Linear layer(LinearOptions(9, 4));
  layer->add_adapter("lora", AdapterOptions().r(2));
  layer->add_adapter("dora", AdapterOptions().r(3).use_dora(true));
  randomize_b(*layer, "lora");
  randomize_b(*layer, "dora");
  const Tensor x = torch::randn({6, 9});
  const Tensor base = layer->base_forward(x);
  const Tensor lora_delta = lora_reference(*layer, layer->adapter("lora"), x) - base;
  const Tensor dora_delta = dora_reference(*layer, layer->adapter("dora"), x) - base;
  EXPECT_LT(max_abs_diff(layer->forward(x), base + lora_delta + dora_delta), 1e-5);
}

TEST(LinearTest, DisabledAdaptersGiveTheBaseOutput) {
  Linear layer(LinearOptions(8, 8));
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  randomize_b(*layer, "default");
  const Tensor x = torch::randn({3, 8});
  const Tensor adapted = layer->forward(x);
  layer->set_adapters_enabled(false);
  EXPECT_EQ(max_abs_diff(layer->forward(x), layer->base_forward(x)), 0.0);
  layer->set_adapters_enabled(true);
  EXPECT_EQ(max_abs_diff(layer->forward(x), adapted), 0.0);
}

TEST(LinearTest, DeleteAdapterRemovesItsParameters) {
  Linear layer(LinearOptions(8, 8));
  layer->add_adapter("a", AdapterOptions().r(2).use_dora(true));
  layer->add_adapter("b", AdapterOptions().r(2));
  auto names = layer->named_parameters().keys();
  EXPECT_THAT(names, ::testing::Contains("lora_A.a.weight"));
  EXPECT_THAT(names, ::testing::Contains("lora_magnitude_vector.a.weight"));
  layer->delete_adapter("a");
  names = layer->named_parameters().keys();
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("weight", "bias", "lora_A.b.weight", "lora_B.b.weight"));
  layer->delete_adapter("b");
  EXPECT_THAT(layer->named_parameters().keys(), ::testing::UnorderedElementsAre("weight", "bias"));
  EXPECT_THROW(layer->delete_adapter("b"), ranktune::Error);
}

TEST(LinearTest, AdapterNamesAreChecked) {
  Linear layer(LinearOptions(4, 4));
  layer->add_adapter("default", AdapterOptions().r(2));
  EXPECT_THROW(layer->add_adapter("default", AdapterOptions().r(2)), ranktune::Error);
  EXPECT_THROW(layer->add_adapter("a.b", AdapterOptions().r(2)), ranktune::Error);
  EXPECT_THROW(layer->add_adapter("", AdapterOptions().r(2)), ranktune::Error);
  EXPECT_THROW(layer->add_adapter("bad_r", AdapterOptions().r(0)), ranktune::Error);
  EXPECT_FALSE(layer->has_adapter("bad_r"));
}

TEST(LinearTest, FrozenBaseWeightNeverGetsAGradient) {
  Linear layer(LinearOptions(6, 5));
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  randomize_b(*layer, "default");
  const Tensor x = torch::randn({4, 6}, torch::requires_grad());
  layer->forward(x).pow(2).sum().backward();
  EXPECT_FALSE(layer->weight.grad().defined());
  EXPECT_FALSE(layer->bias.grad().defined());
  EXPECT_TRUE(layer->adapter("default").lora_A.grad().defined());
  EXPECT_TRUE(layer->adapter("default").magnitude.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

TEST(LinearTest, MixedDtypeAdapterCastsInputAndUpdate) {
  // A bf16 base keeps fp32 adapters (PEFT's autocast_adapter_dtype); the output stays bf16.
  torch::manual_seed(4);
  Linear layer(LinearOptions(8, 6).dtype(torch::kBFloat16));
  layer->add_adapter("default", AdapterOptions().r(2));
  EXPECT_EQ(layer->adapter("default").lora_A.scalar_type(), torch::kFloat32);
  randomize_b(*layer, "default");
  const Tensor x = torch::randn({3, 8}).to(torch::kBFloat16);
  const Tensor y = layer->forward(x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  const Adapter& a = layer->adapter("default");
  const Tensor expected = at::linear(x, layer->weight, layer->bias) +
                          (a.scaling * x.to(torch::kFloat32).mm(a.lora_A.t()).mm(a.lora_B.t())).to(torch::kBFloat16);
  EXPECT_LT(max_abs_diff(y, expected), 2e-2);
}

// ---- merging -------------------------------------------------------------------------------------

class MergeTest : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(MergeTest, MergedEqualsUnmergedAndUnmergeRestoresTheWeight) {
  const ForwardCase& c = GetParam();
  torch::manual_seed(5);
  Linear layer(LinearOptions(16, 12).bias(c.bias).fan_in_fan_out(c.fan_in_fan_out));
  layer->add_adapter("default", AdapterOptions().r(4).lora_alpha(8).use_dora(c.dora).use_rslora(c.rslora));
  randomize_b(*layer, "default");
  if (c.dora) {
    at::NoGradGuard no_grad;
    layer->adapter("default").magnitude.mul_(1.0 + 0.1 * torch::rand({12}));
  }
  const Tensor original = layer->weight.clone();
  const Tensor x = torch::randn({4, 16});
  const Tensor unmerged = layer->forward(x);
  layer->merge(/*safe=*/true);
  EXPECT_TRUE(layer->merged());
  EXPECT_LT(max_abs_diff(layer->forward(x), unmerged), 1e-5);
  layer->unmerge();
  EXPECT_FALSE(layer->merged());
  EXPECT_LT(max_abs_diff(layer->weight, original), 1e-6);
  EXPECT_LT(max_abs_diff(layer->forward(x), unmerged), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Variants, MergeTest,
                         ::testing::Values(ForwardCase{false, false, false, false}, ForwardCase{true, false, true, false},
                                           ForwardCase{true, false, false, true}, ForwardCase{false, true, false, false},
                                           ForwardCase{true, true, true, false}, ForwardCase{true, true, false, true}));

TEST(MergeTest, TwoAdaptersMergeAndUnmergeInOrder) {
  torch::manual_seed(6);
  Linear layer(LinearOptions(10, 10));
  layer->add_adapter("lora", AdapterOptions().r(2));
  layer->add_adapter("dora", AdapterOptions().r(2).use_dora(true));
  randomize_b(*layer, "lora");
  randomize_b(*layer, "dora");
  const Tensor original = layer->weight.clone();
  const Tensor x = torch::randn({3, 10});
  // Merged sequentially, DoRA's norm is taken over W already holding the LoRA delta.
  layer->merge();
  EXPECT_EQ(layer->merged_adapters(), (std::vector<std::string>{"lora", "dora"}));
  layer->unmerge();
  EXPECT_LT(max_abs_diff(layer->weight, original), 1e-6);
}

TEST(MergeTest, SafeMergeFailsOnNonFiniteWeightsAndLeavesTheLayerUntouched) {
  Linear layer(LinearOptions(6, 4));
  layer->add_adapter("broken", AdapterOptions().r(2));
  {
    at::NoGradGuard no_grad;
    layer->adapter("broken").lora_B.fill_(std::numeric_limits<float>::infinity());
  }
  const Tensor original = layer->weight.clone();
  try {
    layer->merge(/*safe=*/true);
    FAIL() << "expected an error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'broken'"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("NaN or Inf"));
  }
  EXPECT_FALSE(layer->merged());
  EXPECT_TRUE(at::equal(layer->weight, original));
}

TEST(MergeTest, DisablingAMergedLayerUnmergesIt) {
  Linear layer(LinearOptions(6, 4));
  layer->add_adapter("default", AdapterOptions().r(2));
  randomize_b(*layer, "default");
  const Tensor original = layer->weight.clone();
  layer->merge();
  layer->set_adapters_enabled(false);
  EXPECT_FALSE(layer->merged());
  EXPECT_LT(max_abs_diff(layer->weight, original), 1e-6);
}

TEST(MergeTest, DeltaWeightIsInTheWeightLayout) {
  Linear layer(LinearOptions(6, 4).fan_in_fan_out(true));
  layer->add_adapter("default", AdapterOptions().r(2).lora_alpha(4));
  randomize_b(*layer, "default");
  const Adapter& a = layer->adapter("default");
  const Tensor delta = layer->delta_weight("default");
  EXPECT_EQ(delta.sizes(), layer->weight.sizes());
  EXPECT_LT(max_abs_diff(delta, (a.scaling * a.lora_B.mm(a.lora_A)).t()), 1e-6);
}

// ---- module plumbing -----------------------------------------------------------------------------

TEST(LinearTest, CloneCopiesAdaptersAndTheyAreIndependent) {
  torch::manual_seed(7);
  Linear layer(LinearOptions(8, 6));
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  randomize_b(*layer, "default");
  auto copy = std::dynamic_pointer_cast<LinearImpl>(layer->clone());
  ASSERT_TRUE(copy);
  const Tensor x = torch::randn({3, 8});
  EXPECT_EQ(max_abs_diff(copy->forward(x), layer->forward(x)), 0.0);
  {
    at::NoGradGuard no_grad;
    copy->adapter("default").lora_B.zero_();
  }
  EXPECT_GT(max_abs_diff(copy->forward(x), layer->forward(x)), 0.0);
  EXPECT_EQ(copy->named_parameters().size(), layer->named_parameters().size());
}

TEST(LinearTest, PrettyPrintShowsTheCallThatRebuildsIt) {
  Linear layer(LinearOptions(16, 8).bias(false));
  layer->add_adapter("default", AdapterOptions().r(4).use_dora(true));
  std::ostringstream out;
  layer->pretty_print(out);
  EXPECT_EQ(out.str(), "ranktune::peft::Linear(in_features=16, out_features=8, bias=false, adapters=[default: r=4 dora])");
}

TEST(LinearTest, AddAdapterFromWeightsChecksShapes) {
  Linear layer(LinearOptions(8, 6));
  try {
    layer->add_adapter_from_weights("x", AdapterOptions().r(2), torch::zeros({2, 6}), torch::zeros({6, 2}));
    FAIL() << "expected an error";
  } catch (const ranktune::Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("lora_A has shape [2, 6], expected [2, 8]"));
  }
  EXPECT_THROW(layer->add_adapter_from_weights("x", AdapterOptions().r(2).use_dora(true), torch::zeros({2, 8}),
                                               torch::zeros({6, 2})),
               ranktune::Error);
  EXPECT_FALSE(layer->has_adapter("x"));
}

// A layer built around existing tensors uses them, not copies: what the caller changes in place the
// layer sees, and what the layer merges lands in the caller's tensor (ranktune.torch's contract).
TEST(LinearTest, WrappingExistingTensorsSharesThem) {
  for (const bool fan_in_fan_out : {false, true}) {
    torch::manual_seed(5);
    const Tensor w = fan_in_fan_out ? torch::randn({6, 4}) : torch::randn({4, 6});
    const Tensor b = torch::randn({4});
    Linear layer(w, b, fan_in_fan_out);
    EXPECT_EQ(layer->options.in_features(), 6);
    EXPECT_EQ(layer->options.out_features(), 4);
    EXPECT_TRUE(layer->weight.is_same(w));
    EXPECT_TRUE(layer->bias.is_same(b));
    const Tensor x = torch::randn({3, 6});
    const Tensor w_oi = fan_in_fan_out ? w.t() : w;
    EXPECT_LT(max_abs_diff(layer->forward(x), at::linear(x, w_oi, b)), 1e-6);
    layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
    randomize_b(*layer, "default");
    const Tensor before = w.clone();
    layer->merge(/*safe=*/true);
    EXPECT_GT(max_abs_diff(w, before), 1e-3) << "the merge must land in the caller's tensor";
    layer->unmerge();
    EXPECT_LT(max_abs_diff(w, before), 1e-5);
  }
  EXPECT_THAT(ranktune::testing::error_of([] { Linear(torch::zeros({4, 6}), torch::zeros({6})); }),
              ::testing::HasSubstr("bias has shape [6] but the weight [4, 6] ([out, in]) has 4 outputs"));
  EXPECT_THAT(ranktune::testing::error_of([] { Linear(torch::zeros({4, 6}), torch::zeros({4}, torch::kFloat64)); }),
              ::testing::HasSubstr("bias is Double on cpu but the weight is Float"));
  EXPECT_THAT(ranktune::testing::error_of([] { Linear(torch::zeros({4}), torch::Tensor()); }),
              ::testing::HasSubstr("2-D floating-point base weight, got [4]"));
}

// Shared adapter weights are the ones forward reads and backward fills.
TEST(LinearTest, SharedAdapterWeightsReplaceTheLayersOwn) {
  Linear layer(LinearOptions(6, 4));
  layer->add_adapter("default", AdapterOptions().r(2).use_dora(true));
  const Adapter& a = layer->adapter("default");
  const Tensor A = a.lora_A.detach().clone().requires_grad_(true);
  const Tensor B = torch::randn({4, 2}).requires_grad_(true);
  const Tensor m = a.magnitude.detach().clone().requires_grad_(true);
  layer->share_adapter_weights("default", A, B, m);
  EXPECT_TRUE(a.lora_A.is_same(A) && a.lora_B.is_same(B) && a.magnitude.is_same(m));
  EXPECT_TRUE(layer->named_parameters()["lora_B.default.weight"].is_same(B));
  EXPECT_EQ(layer->named_parameters().size(), 5u);  // weight, bias, A, B, m: replaced, not added
  layer->forward(torch::randn({3, 6})).sum().backward();
  EXPECT_TRUE(A.grad().defined() && B.grad().defined() && m.grad().defined());

  EXPECT_THAT(ranktune::testing::error_of([&] { layer->share_adapter_weights("default", A, torch::zeros({4, 3}), m); }),
              ::testing::HasSubstr("lora_B must be [4, 2] Float on cpu, got [4, 3] Float on cpu"));
  EXPECT_THAT(ranktune::testing::error_of([&] { layer->share_adapter_weights("default", A, B); }),
              ::testing::HasSubstr("magnitude must be [4]"));
  EXPECT_TRUE(layer->adapter("default").lora_B.is_same(B)) << "a refused call changes nothing";
}

}  // namespace
