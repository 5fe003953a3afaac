// Models loaded with a quantized base (LoadOptions::quantize): logits within the error the
// weights' quantisation predicts, LoRA/DoRA training, merge, memory, and bad input.

#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

namespace ranktune {
namespace {

namespace fs = std::filesystem;
using torch::Tensor;
using ranktune::testing::error_of;
using ranktune::testing::max_abs_diff;
using ranktune::testing::shared_dir;
using ::testing::HasSubstr;

std::string fixture(const std::string& name) { return shared_dir() + "/fixtures/hf-tiny/" + name; }

model::LoadOptions quantized(QuantFormat format, bool double_quant = false) {
  return model::LoadOptions().quantize(format).double_quant(double_quant);
}

double rms(const Tensor& t) { return t.to(at::kDouble).square().mean().sqrt().item<double>(); }

struct Case {
  std::string model;
  QuantFormat format;
};

class QuantizedLogitsTest : public ::testing::TestWithParam<Case> {};

// The bound (docs/quantization.md, "Logits error"): a layer's output error is E x, E = Ŵ - W.
// The rounding errors are independent of x, so ‖E x‖ / ‖W x‖ ≈ ε = ‖E‖_F / ‖W‖_F. Errors of
// different layers are independent, so to first order their variances add. A block's output is
// added to the residual stream, which it does not dominate, and the norms rescale the stream, so
// each layer's relative error reaches the logits with a gain of at most about 1:
//   rms(Δlogits) / rms(logits) <= sqrt(Σ_layers ε²).
// The test asserts that bound, and that the error is not far below it either (at least a tenth),
// so a quantisation that did nothing would fail.
TEST_P(QuantizedLogitsTest, LogitsErrorIsWhatTheWeightErrorPredicts) {
  const Case& c = GetParam();
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/" + c.model + "/golden_logits.safetensors");
  auto dense = model::load_causal_lm(fixture(c.model));
  auto q = model::load_causal_lm(fixture(c.model), quantized(c.format));
  const auto checkpoint = io::SafetensorsFile::open(fixture(c.model) + "/model.safetensors");
  double sum_sq = 0;
  int layers = 0;
  for (const auto& [name, linear] : peft::find_linears(*q)) {
    if (name == "lm_head") {
      EXPECT_FALSE(linear->quantized()) << "the output head stays in full precision";
      continue;
    }
    ASSERT_TRUE(linear->quantized()) << name;
    Tensor w = checkpoint.tensor(name + ".weight").to(at::kFloat);
    if (linear->options.fan_in_fan_out()) w = w.t();
    const Tensor error = linear->dense_weight(at::kFloat) - w;
    sum_sq += std::pow(rms(error) / rms(w), 2);
    ++layers;
  }
  ASSERT_GT(layers, 0);
  const double estimate = std::sqrt(sum_sq);
  const auto golden = io::SafetensorsFile::open(fixture(c.model) + "/golden_logits.safetensors");
  const Tensor ids = golden.tensor("input_ids");
  at::NoGradGuard no_grad;
  const Tensor reference = dense->forward(ids).logits;
  const double relative = rms(q->forward(ids).logits - reference) / rms(reference);
  std::cout << c.model << " " << quant_format_name(c.format) << ": rms(Δlogits)/rms(logits) = " << relative
            << ", predicted " << estimate << " (" << layers << " layers)" << std::endl;
  EXPECT_LT(relative, estimate);
  EXPECT_GT(relative, estimate / 10);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizedLogitsTest,
                         ::testing::Values(Case{"llama", QuantFormat::int8}, Case{"llama", QuantFormat::nf4},
                                           Case{"qwen2", QuantFormat::int8}, Case{"qwen2", QuantFormat::nf4},
                                           Case{"mistral", QuantFormat::int8}, Case{"mistral", QuantFormat::nf4},
                                           Case{"gpt2", QuantFormat::int8}, Case{"gpt2", QuantFormat::nf4}),
                         [](const auto& info) { return info.param.model + "_" + quant_format_name(info.param.format); });

// Loss after each of `steps` SGD steps of a LoRA (or DoRA) adapter on one batch.
std::vector<double> train_curve(const model::LoadOptions& options, bool dora, int steps = 8) {
  auto m = model::load_causal_lm(fixture("llama"), options);
  at::manual_seed(11);
  peft::PeftModel peft(m, peft::LoraConfig().r(4).lora_alpha(8).use_dora(dora).target_modules("all-linear"));
  m->train();
  const Tensor ids = at::randint(0, 256, {2, 16});
  std::vector<Tensor> trainable;
  for (const auto& p : m->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    const Tensor loss = m->forward(ids, {}, ids, nullptr, /*need_logits=*/false).loss;
    losses.push_back(loss.item<double>());
    loss.backward();
    at::NoGradGuard no_grad;
    for (auto& p : trainable) {
      p.sub_(p.grad(), 0.5);
      p.mutable_grad().zero_();
    }
  }
  return losses;
}

TEST(QuantizedModelTest, LoraAndDoraTrainOnAQuantizedBaseAsOnTheFullPrecisionOne) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  for (bool dora : {false, true}) {
    const auto fp32 = train_curve({}, dora);
    for (const auto& options : {quantized(QuantFormat::int8), quantized(QuantFormat::nf4, true)}) {
      const auto curve = train_curve(options, dora);
      const std::string what = quant_format_name(options.quantize()) + (dora ? " dora" : " lora");
      EXPECT_LT(curve.back(), curve.front() - 0.1) << what;
      // The quantized base shifts the curve by about its logits error, no more.
      for (size_t i = 0; i < curve.size(); ++i) {
        EXPECT_NEAR(curve[i], fp32[i], options.quantize() == QuantFormat::int8 ? 0.01 : 0.1) << what << " step " << i;
      }
    }
  }
}

TEST(QuantizedModelTest, MergedModelReproducesTheAdaptedQuantizedModel) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  auto m = model::load_causal_lm(fixture("llama"), quantized(QuantFormat::nf4));
  at::manual_seed(5);
  peft::PeftModel peft(m, peft::LoraConfig().r(4).lora_alpha(8).target_modules({"q_proj", "v_proj"}));
  {
    at::NoGradGuard no_grad;
    for (auto& p : m->named_parameters()) {
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.05);
    }
  }
  const Tensor ids = at::randint(0, 256, {1, 12});
  at::NoGradGuard no_grad;
  const Tensor adapted = m->forward(ids).logits;
  peft.merge_and_unload(/*safe=*/true);
  // Merged layers hold dense weights now; the others are still quantized and written dequantized.
  int still_quantized = 0;
  for (const auto& [name, linear] : peft::find_linears(*m)) still_quantized += linear->quantized();
  EXPECT_GT(still_quantized, 0);
  const fs::path dir = fs::temp_directory_path() / "ranktune_quantized_merge";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fixture("llama") + "/config.json", dir / "config.json");
  const auto rounding = model::save_model_weights(*m, (dir / "model.safetensors").string(), at::kBFloat16);
  EXPECT_GT(rounding.max_abs, 0);
  EXPECT_LT(rounding.relative_rms, 4e-3) << "bf16 keeps 8 significant bits: relative error <= 2^-8 per value";
  model::save_model_weights(*m, (dir / "model.safetensors").string());
  auto reloaded = model::load_causal_lm(dir.string());
  EXPECT_LT(max_abs_diff(reloaded->forward(ids).logits, adapted), 1e-4);
  fs::remove_all(dir);
}

TEST(QuantizedModelTest, BaseWeightBytesPerParameter) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  auto bytes_per_parameter = [](const model::LoadOptions& options) {
    auto m = model::load_causal_lm(fixture("llama"), options);
    double bytes = 0, params = 0;
    for (const auto& [name, linear] : peft::find_linears(*m)) {
      if (name == "lm_head") continue;
      bytes += static_cast<double>(linear->base_weight_nbytes());
      params += static_cast<double>(linear->options.in_features() * linear->options.out_features());
    }
    return bytes / params;
  };
  const double fp32 = bytes_per_parameter({});
  EXPECT_EQ(fp32, 4.0);
  // int8: 1 byte + a 4-byte scale per row of 64 or 172 inputs.
  EXPECT_GT(fp32 / bytes_per_parameter(quantized(QuantFormat::int8)), 3.6);
  EXPECT_NEAR(fp32 / bytes_per_parameter(quantized(QuantFormat::nf4)), 4 / (0.5 + 4.0 / 64), 0.05);
  EXPECT_NEAR(fp32 / bytes_per_parameter(quantized(QuantFormat::nf4, true)), 4 / (0.5 + 1.0 / 64), 0.1);
}

TEST(QuantizedModelTest, ParameterCountsIncludeTheQuantizedWeights) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  const auto config = peft::LoraConfig().r(4).target_modules("all-linear");
  peft::PeftModel dense(model::load_causal_lm(fixture("llama")), config);
  peft::PeftModel q(model::load_causal_lm(fixture("llama"), quantized(QuantFormat::nf4)), config);
  EXPECT_EQ(q.trainable_parameters().total, dense.trainable_parameters().total);
  EXPECT_EQ(q.trainable_parameters().trainable, dense.trainable_parameters().trainable);
}

TEST(QuantizedModelTest, ModulesToSaveCopyDenseModulesButNotQuantizedLayers) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  auto m = model::load_causal_lm(fixture("llama"), quantized(QuantFormat::int8));
  // The embeddings stay dense: a trained copy of them works on a quantized base (the quickstart's recipe).
  EXPECT_NO_THROW(peft::PeftModel(m, peft::LoraConfig().r(4).target_modules("all-linear").modules_to_save(
                                         std::vector<std::string>{"model.embed_tokens"})));
  auto other = model::load_causal_lm(fixture("llama"), quantized(QuantFormat::int8));
  const std::string message = error_of([&] {
    peft::PeftModel(other, peft::LoraConfig().r(4).target_modules({"q_proj"}).modules_to_save(
                               std::vector<std::string>{"model.layers.0.mlp"}));
  });
  EXPECT_THAT(message, HasSubstr("model.layers.0.mlp.gate_proj's base weight is quantized (int8)"));
}

TEST(QuantizedModelTest, RandomlyInitialisedModelsAreQuantizedToo) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/config.json");
  const auto config = model::ModelConfig::load(fixture("llama"));
  at::manual_seed(1);
  auto m = model::create_causal_lm(config, quantized(QuantFormat::int8));
  at::manual_seed(1);
  auto dense = model::create_causal_lm(config);
  const auto dense_linears = peft::find_linears(*dense);
  const auto linears = peft::find_linears(*m);
  ASSERT_EQ(linears.size(), dense_linears.size());
  for (size_t i = 0; i < linears.size(); ++i) {
    const auto& [name, linear] = linears[i];
    EXPECT_EQ(linear->quantized(), name != "lm_head") << name;
    if (name == "lm_head") continue;
    // The same seed draws the same weights as the full-precision model, then quantizes them.
    const auto expected = QuantizedWeight::quantize(dense_linears[i].second->weight_out_in(), QuantFormat::int8);
    EXPECT_TRUE(at::equal(linear->quantized_weight().codes(), expected.codes())) << name;
    EXPECT_NEAR(rms(linear->dense_weight(at::kFloat)), 0.02, 0.002) << name << ": transformers' N(0, 0.02)";
  }
  EXPECT_TRUE(at::equal(m->named_parameters()["model.embed_tokens.weight"],
                        dense->named_parameters()["model.embed_tokens.weight"]));
  EXPECT_THAT(error_of([&] { model::create_causal_lm(config, quantized(QuantFormat::int8, true)); }),
              HasSubstr("nf4 only"));
}

}  // namespace
}  // namespace ranktune
