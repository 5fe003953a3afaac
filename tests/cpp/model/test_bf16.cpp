// bf16 autocast (train.precision: bf16) through the model layer: blocked attention's, the chunked
// loss's and checkpointing's hand-written backward passes against fp32 autograd of plain ATen ops,
// and whole models — Llama, GPT-2 and the mixture-of-experts fixtures (Mixtral, Qwen2-MoE,
// DeepSeek-V2 with latent attention), LoRA, DoRA, full fine-tuning, int8/NF4 bases, gradient
// checkpointing — whose loss and trainable gradients agree with the same model in fp32.
//
// Tolerances (relative L2 error): kernels 2e-2 (measured 3.1e-3 to 7.7e-3: bf16 keeps 8
// significant bits, ≈ 2e-3 relative rounding per value, a few roundings per chain); a whole model's
// loss 1e-2 (measured ≤ 1.4e-4) and its trainable gradients 1.5e-1 (measured 4e-3 to 2.4e-2, and
// 7e-2 for DeepSeek-V2: ten or more bf16 products deep, through softmax and norms, and a router
// whose logits GEMM runs in bf16 — as under transformers' autocast — may send a token to another
// expert).

#include "ranktune/core/autocast.h"
#include "ranktune/model/blocked_attention.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/model/layers.h"
#include "ranktune/model/loss.h"
#include "ranktune/peft/peft_model.h"
#include "model/checkpointing.h"
#include "bf16_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>

namespace ranktune {
namespace {

using ranktune::testing::expect_bf16_agrees;
using ranktune::testing::relative_error;
using ranktune::testing::shared_dir;
using torch::Tensor;

constexpr double kKernelTolerance = 2e-2;
constexpr double kModelLossTolerance = 1e-2;
constexpr double kModelGradientTolerance = 1.5e-1;

TEST(Bf16ModelKernels, BlockedAttentionAgreesWithFp32EagerAttention) {
  at::manual_seed(5);
  const int64_t b = 2, t = 80, h = 4, kv = 2, d = 16;  // two query blocks of 64; grouped heads
  const Tensor positions = at::arange(t, at::kFloat).unsqueeze(1) / at::pow(10000.0, at::arange(0, d, 2, at::kFloat) / d);
  const Tensor angles = at::cat({positions, positions}, 1).unsqueeze(0).expand({b, t, d});
  const Tensor cos = angles.cos(), sin = angles.sin();
  Tensor mask = at::ones({b, t}, at::kLong);
  mask[1].narrow(0, 70, 10).zero_();  // right padding in the second row
  // Real query rows only: fully masked ones are undefined in both (transformers too).
  const Tensor real = mask.to(at::kFloat).view({b, t, 1, 1});
  expect_bf16_agrees(
      {at::randn({b, t, h, d}), at::randn({b, t, kv, d}), at::randn({b, t, kv, d})},
      [&](const auto& x) { return model::blocked_causal_attention(x[0], x[1], x[2], cos, sin, mask) * real; },
      [&](const auto& x) {
        const Tensor q = model::apply_rotary(x[0], cos, sin).transpose(1, 2);
        const Tensor k = model::apply_rotary(x[1], cos, sin).transpose(1, 2);
        const Tensor bias = model::attention_bias(mask, b, t, 0, at::kFloat);
        return model::attention(q, k, x[2].transpose(1, 2), bias).transpose(1, 2) * real;
      },
      "BlockedAttention", kKernelTolerance);
}

TEST(Bf16ModelKernels, ChunkedLossAgreesWithFp32CrossEntropyOverFullLogits) {
  at::manual_seed(6);
  Tensor labels = at::randint(0, 300, {2, 40}, at::TensorOptions().dtype(at::kLong));
  labels[0].narrow(0, 0, 10).fill_(-100);
  expect_bf16_agrees(
      {at::randn({2, 40, 32}), at::randn({300, 32}) * 0.3},
      [&](const auto& x) { return model::chunked_causal_lm_loss(x[0], x[1], labels, /*chunk=*/16); },
      [&](const auto& x) { return model::causal_lm_loss(at::linear(x[0], x[1]), labels); }, "LinearCrossEntropy",
      kKernelTolerance);
}

TEST(Bf16ModelKernels, CheckpointRecomputesUnderTheForwardsAutocast) {
  at::manual_seed(7);
  // x and the block's weight; the block is a projection, an activation and a norm.
  const auto block_with = [](const Tensor& w) -> model::Block {
    return [w](const Tensor& x) {
      const Tensor y = at::silu(at::linear(x, w));
      return y * at::rsqrt(y.to(at::kFloat).pow(2).mean(-1, true) + 1e-6).to(y.scalar_type());
    };
  };
  expect_bf16_agrees(
      {at::randn({2, 30, 24}), at::randn({24, 24}) * 0.3},
      [&](const auto& x) {
        const Tensor y = model::checkpointed(block_with(x[1]), x[0]);
        EXPECT_EQ(y.scalar_type(), at::kBFloat16) << "the block ran under autocast";
        return y;
      },
      [&](const auto& x) { return block_with(x[1])(x[0]); }, "Checkpoint", kKernelTolerance);
}

// ---- whole models ------------------------------------------------------------------------------

struct ModelCase {
  std::string name;
  std::string model;   // "llama", "gpt2" or a hf-tiny-moe fixture
  std::string method;  // "lora", "dora" or "full"
  QuantFormat quantize = QuantFormat::none;
  bool checkpointing = false;
};

model::ModelConfig tiny(const std::string& type) {
  const std::string json = type == "gpt2"
      ? R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2,
           "n_positions": 128, "vocab_size": 50})"
      : R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
           "max_position_embeddings": 128})";
  return model::ModelConfig::from_json(json, "tiny/config.json");
}

class Bf16Model : public ::testing::TestWithParam<ModelCase> {};

TEST_P(Bf16Model, LossAndTrainableGradientsAgreeWithFp32) {
  const ModelCase& c = GetParam();
  const bool fixture = c.model != "llama" && c.model != "gpt2";
  if (fixture) RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/" + c.model + "/model.safetensors");
  torch::manual_seed(8);
  const auto options = model::LoadOptions().quantize(c.quantize);
  auto m = fixture ? model::load_causal_lm(shared_dir() + "/fixtures/hf-tiny-moe/" + c.model, options)
                   : model::create_causal_lm(tiny(c.model), options);
  if (c.method != "full") {
    peft::inject(*m, peft::LoraConfig().r(4).lora_alpha(8).target_modules("all-linear").use_dora(c.method == "dora"),
                 "default");
    at::NoGradGuard no_grad;
    for (auto& [name, linear] : peft::find_linears(*m)) {
      if (linear->has_adapter("default")) linear->adapter("default").lora_B.normal_(0.0, 0.05);
    }
  }
  m->set_gradient_checkpointing(c.checkpointing);
  m->train();
  const int64_t vocab = m->config().vocab_size;
  const Tensor ids = at::randint(0, vocab, {2, 72}, at::TensorOptions().dtype(at::kLong));  // two attention blocks
  Tensor mask = at::ones({2, 72}, at::kLong);
  mask[1].narrow(0, 60, 12).zero_();  // right padding
  Tensor labels = ids.masked_fill(mask.eq(0), -100);

  std::vector<Tensor> trainable;
  for (const auto& p : m->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  ASSERT_FALSE(trainable.empty());
  auto run = [&](std::optional<at::ScalarType> autocast) {
    for (auto& p : trainable) p.mutable_grad() = Tensor();
    Tensor loss;
    {
      const CpuAutocastScope scope(autocast);
      loss = m->forward(ids, mask, labels).loss;
    }
    loss.backward();
    std::vector<Tensor> grads;
    for (auto& p : trainable) grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    return std::make_pair(loss.item<double>(), grads);
  };
  const auto [fp32_loss, fp32_grads] = run(std::nullopt);
  const auto [bf16_loss, bf16_grads] = run(at::kBFloat16);
  ASSERT_TRUE(std::isfinite(bf16_loss)) << c.name;
  EXPECT_LT(std::abs(bf16_loss - fp32_loss) / fp32_loss, kModelLossTolerance) << c.name << ": " << bf16_loss << " vs " << fp32_loss;
  const Tensor all_fp32 = at::cat([&] { std::vector<Tensor> f; for (auto& g : fp32_grads) f.push_back(g.flatten()); return f; }());
  const Tensor all_bf16 = at::cat([&] { std::vector<Tensor> f; for (auto& g : bf16_grads) f.push_back(g.flatten()); return f; }());
  EXPECT_LT(relative_error(all_bf16, all_fp32), kModelGradientTolerance) << c.name;
  RecordProperty("loss_relative_error", c10::str(std::abs(bf16_loss - fp32_loss) / fp32_loss));
  RecordProperty("gradient_relative_error", c10::str(relative_error(all_bf16, all_fp32)));
  for (size_t i = 0; i < trainable.size(); ++i) {
    EXPECT_EQ(trainable[i].scalar_type(), at::kFloat) << c.name << ": parameters stay fp32 (master copies)";
    EXPECT_EQ(bf16_grads[i].scalar_type(), at::kFloat) << c.name << ": and so do their gradients";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, Bf16Model,
    ::testing::Values(ModelCase{"LlamaLora", "llama", "lora"}, ModelCase{"LlamaDora", "llama", "dora"},
                      ModelCase{"LlamaFull", "llama", "full"},
                      ModelCase{"LlamaLoraCheckpointing", "llama", "lora", QuantFormat::none, true},
                      ModelCase{"LlamaDoraInt8", "llama", "dora", QuantFormat::int8},
                      ModelCase{"LlamaLoraNf4Checkpointing", "llama", "lora", QuantFormat::nf4, true},
                      ModelCase{"Gpt2Lora", "gpt2", "lora"}, ModelCase{"Gpt2Full", "gpt2", "full"},
                      ModelCase{"MixtralLora", "mixtral_tiny", "lora"}, ModelCase{"Qwen2MoeDora", "qwen2_moe_tiny", "dora"},
                      ModelCase{"DeepseekV2Lora", "deepseek_v2_tiny", "lora"},
                      ModelCase{"DeepseekV2Full", "deepseek_v2_tiny", "full", QuantFormat::none, true}),
    [](const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; });

// ---- a model held in bf16 (model.dtype: bfloat16) ---------------------------------------------------

// The most elements any dtype conversion (aten::_to_copy) read while a ConversionWatch lives.
std::atomic<int64_t> largest_conversion{0};

std::unique_ptr<at::ObserverContext> on_op(const at::RecordFunction& fn) {
  const auto inputs = fn.inputs();
  if (std::string(fn.name()) == "aten::_to_copy" && !inputs.empty() && inputs[0].isTensor()) {
    const int64_t n = inputs[0].toTensor().numel();
    int64_t seen = largest_conversion.load();
    while (n > seen && !largest_conversion.compare_exchange_weak(seen, n)) {
    }
  }
  return nullptr;
}

class ConversionWatch {
 public:
  ConversionWatch() {
    largest_conversion = 0;
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(on_op).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  }
  ~ConversionWatch() { at::removeCallback(handle_); }
  int64_t largest() const { return largest_conversion.load(); }

 private:
  at::CallbackHandle handle_;
};

TEST(Bf16Decode, ADecodeStepReadsTheBf16WeightsWithoutConvertingThem) {
  const auto config = model::ModelConfig::from_json(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128, "intermediate_size": 384,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
          "max_position_embeddings": 64})",
      "tiny/config.json");
  const int64_t smallest_weight = 64 * 128;  // k/v projections: 64 x 128
  torch::manual_seed(9);
  for (const bool lora : {false, true}) {
    auto m = model::create_causal_lm(config, at::kBFloat16);
    if (lora) peft::inject(*m, peft::LoraConfig().r(8).target_modules("all-linear"), "default");
    m->eval();
    at::NoGradGuard no_grad;
    for (const auto& p : m->named_parameters()) {
      const bool adapter = p.key().find("lora_") != std::string::npos;
      EXPECT_EQ(p.value().scalar_type(), adapter ? at::kFloat : at::kBFloat16) << p.key();
    }
    auto cache = m->make_cache(1, 16);
    const Tensor prompt = at::randint(0, 64, {1, 8}, at::TensorOptions().dtype(at::kLong));
    m->forward(prompt, {}, {}, &cache);
    ConversionWatch watch;
    const Tensor logits = m->forward(prompt.narrow(1, 7, 1), {}, {}, &cache).logits;
    EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
    // Only activations (a few hundred values) change dtype: LoRA's input to fp32 and back.
    EXPECT_LT(watch.largest(), smallest_weight) << (lora ? "LoRA" : "base") << ": a weight was converted";
  }
  ConversionWatch watch;  // the watch sees a weight converted
  at::ones({64, 128}, at::kBFloat16).to(at::kFloat);
  EXPECT_EQ(watch.largest(), smallest_weight);
}

// A checkpoint read in bf16 (load_causal_lm's conversion, as `ranktune generate --dtype bf16` and
// `ranktune_bench decode --merged --dtype bf16` read theirs) decodes greedily as the fp32 model does:
// stories260k (a trained model, so few greedy choices are near-ties) from its BOS token. On this
// machine the first 114 of 200 tokens agree; 32 leaves room for other CPUs' bf16 GEMMs.
TEST(Bf16Decode, ACheckpointReadInBf16GeneratesTheFp32GreedyTokens) {
  RANKTUNE_REQUIRE_SHARED("models/stories260k/model.safetensors");
  const std::string dir = shared_dir() + "/models/stories260k";
  const auto options = model::GenerationOptions().max_new_tokens(32);
  const auto fp32 = model::generate(*model::load_causal_lm(dir), {{1}}, options)[0].tokens;
  auto bf16 = model::load_causal_lm(dir, model::LoadOptions().dtype(at::kBFloat16));
  for (const auto& p : bf16->parameters()) ASSERT_EQ(p.scalar_type(), at::kBFloat16);
  ASSERT_EQ(fp32.size(), 32u);
  EXPECT_EQ(model::generate(*bf16, {{1}}, options)[0].tokens, fp32);
}

}  // namespace
}  // namespace ranktune
