// Mixture-of-experts models against Hugging Face: the hf-tiny-moe fixtures' logits and loss as
// transformers (Mixtral, Qwen2-MoE) and DeepSeek's own code (DeepSeek-V2) computed them, PEFT's
// LoRA adapter on Mixtral's experts before and after merge, float64 gradients through the routed
// experts and the router, generation with the latent KV cache, routing and config errors.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/model/moe.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>

using namespace ranktune;
using ranktune::testing::max_abs_diff;
using ranktune::testing::numeric_gradient;
using ranktune::testing::shared_dir;
using ranktune::testing::thrown_error;
using ::testing::HasSubstr;
using torch::Tensor;

namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return shared_dir() + "/fixtures/hf-tiny-moe/" + name; }

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(io::read_file(path)); }

class MoeParity : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeParity, LogitsAndLossMatchTheReference) {
  const std::string name = GetParam();
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/" + name + "/golden_logits.safetensors");
  auto model = model::load_causal_lm(fixture(name));
  const auto golden = io::SafetensorsFile::open(fixture(name) + "/golden_logits.safetensors");
  const Tensor input_ids = golden.tensor("input_ids");
  const auto out = model->forward(input_ids, {}, /*labels=*/input_ids);
  EXPECT_LT(max_abs_diff(out.logits, golden.tensor("logits")), 1e-4) << name;
  const double recorded = read_json(fixture(name) + "/golden.json")["loss_with_labels=input_ids"];
  EXPECT_NEAR(out.loss.item<double>(), recorded, 1e-5) << name;
  EXPECT_FALSE(out.aux_loss.defined());  // output_router_logits is false in every fixture
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MoeParity, ::testing::Values("mixtral_tiny", "qwen2_moe_tiny", "deepseek_v2_tiny"));

TEST(MoeModel, ModuleNamesAreHuggingFaces) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/deepseek_v2_tiny/model.safetensors");
  // Loading is strict: every checkpoint tensor has a parameter of the same name and shape.
  auto mixtral = model::load_causal_lm(fixture("mixtral_tiny"));
  auto qwen = model::load_causal_lm(fixture("qwen2_moe_tiny"));
  auto deepseek = model::load_causal_lm(fixture("deepseek_v2_tiny"));
  std::set<std::string> linears;
  for (auto& [name, layer] : peft::find_linears(*deepseek)) linears.insert(name);
  EXPECT_TRUE(linears.count("model.layers.1.self_attn.kv_a_proj_with_mqa"));
  EXPECT_TRUE(linears.count("model.layers.1.self_attn.q_b_proj"));
  EXPECT_TRUE(linears.count("model.layers.2.mlp.experts.7.down_proj"));
  EXPECT_TRUE(linears.count("model.layers.2.mlp.shared_experts.up_proj"));
  EXPECT_TRUE(linears.count("model.layers.0.mlp.gate_proj"));  // first_k_dense_replace: 1
  EXPECT_FALSE(linears.count("model.layers.1.mlp.gate"));      // DeepSeek's router is not a Linear
  linears.clear();
  for (auto& [name, layer] : peft::find_linears(*qwen)) linears.insert(name);
  EXPECT_TRUE(linears.count("model.layers.0.mlp.shared_expert_gate"));
  EXPECT_TRUE(linears.count("model.layers.0.mlp.gate"));
  int64_t experts = 0;
  for (auto& [name, layer] : peft::find_linears(*mixtral)) experts += name.find(".experts.") != std::string::npos;
  EXPECT_EQ(experts, 2 * 8 * 3);
}

TEST(MoeModel, PeftLoraOnMixtralExpertsMatchesPeftBeforeAndAfterMerge) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/mixtral_lora_experts/golden_merged_logits.safetensors");
  auto base = model::load_causal_lm(fixture("mixtral_tiny"));
  auto peft_model = peft::PeftModel::from_pretrained(base, fixture("mixtral_lora_experts"));
  int adapted = 0;
  for (auto& [name, linear] : peft::find_linears(*base)) adapted += linear->has_adapter("default") ? 1 : 0;
  EXPECT_EQ(adapted, 52);  // golden.json: targeted_modules (2 × (q, v + 8 experts × 3))
  const auto golden = io::SafetensorsFile::open(fixture("mixtral_lora_experts") + "/golden_logits.safetensors");
  const Tensor input_ids = golden.tensor("input_ids");
  const auto out = base->forward(input_ids, {}, input_ids);
  EXPECT_LT(max_abs_diff(out.logits, golden.tensor("logits")), 1e-4);
  const double recorded = read_json(fixture("mixtral_lora_experts") + "/golden.json")["loss_with_labels=input_ids"];
  EXPECT_NEAR(out.loss.item<double>(), recorded, 1e-5);
  // The adapter changes the logits far beyond the tolerance: the parity above is not the base's.
  {
    peft::DisabledAdapters off(peft_model);
    EXPECT_GT(max_abs_diff(base->forward(input_ids).logits, golden.tensor("logits")), 1e-2);
  }
  peft_model.merge_adapter();
  const auto merged = io::SafetensorsFile::open(fixture("mixtral_lora_experts") + "/golden_merged_logits.safetensors");
  EXPECT_LT(max_abs_diff(base->forward(input_ids).logits, merged.tensor("logits")), 1e-4);
}

// Central differences in float64 against autograd, for LoRA adapters on the routed experts, the
// router and MLA's projections: the gradient flows through the grouped expert GEMMs, the
// index_add back, the routing weights (softmax, top-k, renormalisation / scaling) and the latent
// attention.
void expect_gradients_match(const std::string& name, const std::vector<std::string>& targets,
                            const std::vector<std::string>& checked) {
  auto model = model::load_causal_lm(fixture(name), model::LoadOptions().dtype(torch::kFloat64));
  at::manual_seed(0);
  peft::PeftModel peft_model(model, peft::LoraConfig().r(2).lora_alpha(4).target_modules(targets));
  {
    at::NoGradGuard no_grad;  // B = 0 would hide the gradients of A
    for (auto& [layer_name, layer] : peft::find_linears(*model)) {
      if (layer->has_adapter("default")) layer->adapter("default").lora_B.normal_(0, 0.05);
    }
  }
  model->train();
  const Tensor ids = at::tensor(std::vector<int64_t>{1, 9, 33, 71, 5, 120, 250, 17, 3, 88, 42, 199}).unsqueeze(0);
  // The model's own loss is fp32 whatever the dtype: a float64 cross-entropy of the logits instead.
  auto loss_tensor = [&] {
    const Tensor logits = model->forward(ids).logits[0];
    return at::cross_entropy_loss(logits.narrow(0, 0, ids.size(1) - 1), ids[0].narrow(0, 1, ids.size(1) - 1));
  };
  auto loss = [&] { return loss_tensor().item<double>(); };
  const Tensor value = loss_tensor();
  ASSERT_EQ(value.scalar_type(), torch::kFloat64);
  value.backward();
  const auto params = model->named_parameters();
  for (const std::string& p : checked) {
    SCOPED_TRACE(p);
    ASSERT_TRUE(params.contains(p));
    const Tensor param = params[p];
    ASSERT_TRUE(param.grad().defined());
    EXPECT_GT(param.grad().abs().max().item<double>(), 1e-8);  // something to check
    // The model normalises, attends and takes the loss in fp32 even in float64 (as transformers),
    // so central differences use a larger step and agree to ~1e-3 of the gradient's scale; a
    // missing term (a routing weight, the scaling factor) is off by its whole size.
    const double scale = param.grad().abs().max().item<double>();
    EXPECT_LT(max_abs_diff(param.grad(), numeric_gradient(loss, param, 1e-3)), 5e-3 * scale);
  }
}

// The sparse block alone runs entirely in float64: exact central differences for the input
// (through the experts and, via the routing weights, the router), an expert's adapter and the
// router's adapter.
void expect_block_gradients_match(const std::string& config_json, bool adapt_router) {
  const auto config = model::ModelConfig::from_json(config_json);
  at::manual_seed(1);
  model::SparseMoeBlock block(config, torch::kFloat64);
  {
    at::NoGradGuard no_grad;
    for (auto& p : block->parameters()) p.normal_(0, 0.5);
  }
  std::vector<std::string> targets = {"w1", "w2", "gate_proj", "down_proj"};
  if (adapt_router) targets.push_back("gate");
  peft::PeftModel peft_block(block.ptr(), peft::LoraConfig().r(2).target_modules(targets));
  {
    at::NoGradGuard no_grad;
    for (auto& [name, layer] : peft::find_linears(*block)) {
      if (layer->has_adapter("default")) layer->adapter("default").lora_B.normal_(0, 0.5);
    }
  }
  const Tensor x = at::randn({2, 5, config.hidden_size}, at::TensorOptions().dtype(torch::kFloat64)).requires_grad_(true);
  const Tensor probe = at::randn({2, 5, config.hidden_size}, at::TensorOptions().dtype(torch::kFloat64));
  auto loss = [&] { return (block->forward(x) * probe).sum().item<double>(); };
  (block->forward(x) * probe).sum().backward();
  const auto params = block->named_parameters();
  std::vector<std::pair<std::string, Tensor>> checked = {{"x", x}};
  for (const auto& item : params) {
    if (item.value().requires_grad() && (item.key().rfind("experts.1.", 0) == 0 || item.key().rfind("gate.", 0) == 0 ||
                                         item.key().rfind("shared_expert", 0) == 0)) {
      checked.emplace_back(item.key(), item.value());
    }
  }
  ASSERT_GE(checked.size(), adapt_router ? 5u : 3u);
  for (auto& [name, tensor] : checked) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(tensor.grad().defined());
    EXPECT_LT(max_abs_diff(tensor.grad(), numeric_gradient(loss, tensor)), 1e-7);
  }
}

TEST(MoeBlock, Float64GradientsMatchFiniteDifferences) {
  const std::string common = R"("hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
      "vocab_size": 16, )";
  expect_block_gradients_match(R"({"architectures": ["MixtralForCausalLM"], )" + common +
                                   R"("num_local_experts": 4, "num_experts_per_tok": 2})",
                               true);
  expect_block_gradients_match(R"({"architectures": ["Qwen2MoeForCausalLM"], )" + common +
                                   R"("num_experts": 4, "num_experts_per_tok": 3, "moe_intermediate_size": 6,
                                   "shared_expert_intermediate_size": 10})",
                               true);
  const std::string mla = R"("kv_lora_rank": 4, "qk_nope_head_dim": 4, "qk_rope_head_dim": 2, "v_head_dim": 4,
      "moe_intermediate_size": 6, "n_routed_experts": 8, "n_group": 4, "topk_group": 2, "num_experts_per_tok": 3,
      "n_shared_experts": 2, "routed_scaling_factor": 2.5)";
  expect_block_gradients_match(R"({"architectures": ["DeepseekV2ForCausalLM"], )" + common + mla +
                                   R"(, "topk_method": "group_limited_greedy"})",
                               false);
  expect_block_gradients_match(R"({"architectures": ["DeepseekV3ForCausalLM"], )" + common + mla +
                                   R"(, "norm_topk_prob": true})",
                               false);
}

TEST(MoeModel, GradientsThroughRoutedExpertsAndRouterMatchFiniteDifferences) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/mixtral_tiny/model.safetensors");
  expect_gradients_match("mixtral_tiny", {"w1", "w2", "w3", "gate"},
                         {"model.layers.0.block_sparse_moe.experts.2.w2.lora_B.default.weight",
                          "model.layers.1.block_sparse_moe.experts.5.w1.lora_A.default.weight",
                          "model.layers.0.block_sparse_moe.gate.lora_B.default.weight"});
}

TEST(MoeModel, GradientsThroughLatentAttentionAndSharedExpertsMatchFiniteDifferences) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/deepseek_v2_tiny/model.safetensors");
  expect_gradients_match("deepseek_v2_tiny", {"q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "down_proj"},
                         {"model.layers.1.self_attn.kv_b_proj.lora_B.default.weight",
                          "model.layers.0.self_attn.kv_a_proj_with_mqa.lora_B.default.weight",
                          "model.layers.2.mlp.experts.1.down_proj.lora_B.default.weight",
                          "model.layers.1.mlp.shared_experts.down_proj.lora_B.default.weight"});
}

TEST(MoeModel, ExpertsRunOnlyOnTheirRoutedTokens) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/mixtral_tiny/model.safetensors");
  auto model = model::load_causal_lm(fixture("mixtral_tiny"));
  peft::PeftModel peft_model(model, peft::LoraConfig().r(2).target_modules({"w1", "w2", "w3"}));
  model->train();
  // One token, top-2 of 8 experts per layer: exactly 2 experts per layer take part in the
  // computation; the other 6 are never called (their adapters get no gradient at all, not a zero
  // one), so nothing is computed for tokens an expert was not routed to.
  const Tensor ids = at::tensor(std::vector<int64_t>{1}).unsqueeze(0);
  model->forward(ids).logits.sum().backward();
  std::map<std::string, int> used_per_layer;
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".w1.lora_A.") == std::string::npos) continue;
    if (item.value().grad().defined()) ++used_per_layer[name.substr(0, name.find(".block_sparse_moe"))];
  }
  EXPECT_EQ(used_per_layer, (std::map<std::string, int>{{"model.layers.0", 2}, {"model.layers.1", 2}}));
}

// Greedy continuation recomputed from scratch each step (no cache).
std::vector<int64_t> greedy_without_cache(model::CausalLMImpl& model, std::vector<int64_t> ids, int64_t n) {
  at::NoGradGuard no_grad;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const Tensor logits = model.forward(at::tensor(ids).unsqueeze(0)).logits;
    const int64_t next = logits[0][-1].argmax().item<int64_t>();
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

class MoeCache : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeCache, GenerationWithCacheEqualsWithout) {
  const std::string name = GetParam();
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/" + name + "/model.safetensors");
  auto model = model::load_causal_lm(fixture(name));
  model->eval();
  const std::vector<int64_t> prompt = {1, 9, 33, 71, 5};
  const auto cached = model::generate(*model, {prompt}, model::GenerationOptions().max_new_tokens(12));
  EXPECT_EQ(cached[0].tokens, greedy_without_cache(*model, prompt, 12));
  // Left-padded batch: each row as alone.
  const std::vector<int64_t> short_prompt = {1, 250, 17};
  const auto batch = model::generate(*model, {prompt, short_prompt}, model::GenerationOptions().max_new_tokens(6));
  EXPECT_EQ(batch[1].tokens, greedy_without_cache(*model, short_prompt, 6));
  // The cached logits of a whole sequence fed token by token equal the uncached ones.
  const Tensor ids = at::tensor(std::vector<int64_t>{1, 9, 33, 71, 5, 120, 250, 17}).unsqueeze(0);
  at::NoGradGuard no_grad;
  const Tensor full = model->forward(ids).logits;
  model::KVCache cache = model->make_cache(1, 8);
  model->forward(ids.narrow(1, 0, 5), {}, {}, &cache);
  const Tensor tail = model->forward(ids.narrow(1, 5, 3), {}, {}, &cache).logits;
  EXPECT_LT(max_abs_diff(tail, full.narrow(1, 5, 3)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MoeCache, ::testing::Values("mixtral_tiny", "qwen2_moe_tiny", "deepseek_v2_tiny"));

TEST(MoeModel, LatentCacheHoldsTheCompressedLatentAndRotaryKeyOnly) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/deepseek_v2_tiny/config.json");
  auto model = model::load_causal_lm(fixture("deepseek_v2_tiny"));
  // 3 layers × (kv_lora_rank 16 + qk_rope_head_dim 8) × 4 bytes, against 3 × 4 heads × (24 + 16) × 4
  // for full keys and values.
  EXPECT_EQ(model->make_cache(1, 4).bytes_per_token(), 3 * (16 + 8) * 4);
  auto mixtral = model::load_causal_lm(fixture("mixtral_tiny"));
  EXPECT_EQ(mixtral->make_cache(1, 4).bytes_per_token(), 2 * 2 * 2 * 16 * 4);  // layers × k,v × kv heads × head_dim
}

TEST(MoeRouting, TopKRenormalisesAndScalesAsConfigured) {
  model::MoeConfig m;
  m.num_experts = 4;
  m.num_experts_per_tok = 2;
  const Tensor logits = at::log(at::tensor({0.1, 0.2, 0.3, 0.4}, at::kFloat)).unsqueeze(0);
  auto r = model::route(logits, m);
  EXPECT_EQ(r.experts[0][0].item<int64_t>(), 3);
  EXPECT_EQ(r.experts[0][1].item<int64_t>(), 2);
  EXPECT_NEAR(r.weights[0][0].item<double>(), 0.4, 1e-6);  // Qwen2-MoE without norm_topk_prob
  m.norm_topk_prob = true;
  EXPECT_NEAR(model::route(logits, m).weights[0][0].item<double>(), 0.4 / 0.7, 1e-6);  // Mixtral
  m.norm_topk_prob = false;
  m.routed_scaling_factor = 2.5;
  EXPECT_NEAR(model::route(logits, m).weights[0][1].item<double>(), 0.75, 1e-6);  // DeepSeek-V2
}

TEST(MoeRouting, GroupLimitedGreedyPicksInsideTheBestGroups) {
  model::MoeConfig m;
  m.num_experts = 4;
  m.num_experts_per_tok = 2;
  m.topk_method = model::MoeConfig::TopK::group_limited_greedy;
  m.n_group = 2;
  m.topk_group = 1;
  // Group 0 = experts {0, 1} (best 0.35), group 1 = {2, 3} (best 0.3): the top-2 overall would be
  // 0 and 2, the group limit gives 0 and 1.
  const Tensor logits = at::log(at::tensor({0.35, 0.1, 0.3, 0.25}, at::kFloat)).unsqueeze(0);
  const auto r = model::route(logits, m);
  EXPECT_EQ(std::set<int64_t>({r.experts[0][0].item<int64_t>(), r.experts[0][1].item<int64_t>()}), std::set<int64_t>({0, 1}));
  // noaux_tc (sigmoid): a group scores the sum of its two best biased scores, experts are chosen
  // on biased scores and weighted by unbiased ones.
  m.topk_method = model::MoeConfig::TopK::noaux_tc;
  m.scoring = model::MoeConfig::Scoring::sigmoid;
  const Tensor raw = at::tensor({2.0, -3.0, 1.0, 0.5}, at::kFloat).unsqueeze(0);
  const Tensor bias = at::tensor({0.0, 0.0, 0.0, 0.0}, at::kFloat);
  const auto unbiased = model::route(raw, m, bias);  // group sums: 0.93, 1.35 -> group 1
  EXPECT_EQ(std::set<int64_t>({unbiased.experts[0][0].item<int64_t>(), unbiased.experts[0][1].item<int64_t>()}),
            std::set<int64_t>({2, 3}));
  const auto biased = model::route(raw, m, at::tensor({0.0, 1.0, 0.0, 0.0}, at::kFloat));  // group 0: 1.93
  const std::set<int64_t> chosen = {biased.experts[0][0].item<int64_t>(), biased.experts[0][1].item<int64_t>()};
  EXPECT_EQ(chosen, std::set<int64_t>({0, 1}));
  const double w1 = biased.experts[0][0].item<int64_t>() == 1 ? biased.weights[0][0].item<double>() : biased.weights[0][1].item<double>();
  EXPECT_NEAR(w1, 1.0 / (1.0 + std::exp(3.0)), 1e-6);  // the unbiased sigmoid
}

TEST(MoeRouting, LoadBalancingLossIsOneWhenBalancedAndTwoWhenCollapsed) {
  // Two experts, top-1: perfectly balanced routing gives E · Σ f·P = 2 · (½·½ + ½·½) = 1.
  const Tensor balanced = at::tensor({20.0, 0.0, 0.0, 20.0}, at::kFloat).view({2, 2});
  EXPECT_NEAR(model::load_balancing_loss({balanced}, 2, 1).item<double>(), 1.0, 1e-6);
  const Tensor collapsed = at::tensor({20.0, 0.0, 20.0, 0.0}, at::kFloat).view({2, 2});
  EXPECT_NEAR(model::load_balancing_loss({collapsed}, 2, 1).item<double>(), 2.0, 1e-6);
  // A padding token is left out: only the balanced-looking first token counts... as collapsed.
  const Tensor mask = at::tensor(std::vector<int64_t>{1, 0}).unsqueeze(0);
  EXPECT_NEAR(model::load_balancing_loss({balanced}, 2, 1, mask).item<double>(), 2.0, 1e-6);
}

TEST(MoeModel, RouterAuxLossIsAddedWhenOutputRouterLogitsIsSet) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/mixtral_tiny/config.json");
  auto config = model::ModelConfig::load(fixture("mixtral_tiny"));
  config.moe.output_router_logits = true;
  config.moe.router_aux_loss_coef = 0.5;
  auto model = model::create_causal_lm(config);
  model::load_weights(*model, fixture("mixtral_tiny"));
  const Tensor ids = at::tensor(std::vector<int64_t>{1, 9, 33, 71, 5, 120, 250, 17}).unsqueeze(0);
  const auto out = model->forward(ids, {}, ids);
  ASSERT_TRUE(out.aux_loss.defined());
  EXPECT_GT(out.aux_loss.item<double>(), 0.0);
  auto plain = model::load_causal_lm(fixture("mixtral_tiny"));
  const double ce = plain->forward(ids, {}, ids).loss.item<double>();
  EXPECT_NEAR(out.loss.item<double>(), ce + 0.5 * out.aux_loss.item<double>(), 1e-5);
}

TEST(MoeModel, GradientCheckpointingGivesTheSameGradientsAndRefusesTheAuxLoss) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny-moe/deepseek_v2_tiny/model.safetensors");
  auto model = model::load_causal_lm(fixture("deepseek_v2_tiny"));
  peft::PeftModel peft_model(model, peft::LoraConfig().r(2).target_modules({"kv_b_proj", "down_proj"}));
  {
    at::NoGradGuard no_grad;
    for (auto& [name, layer] : peft::find_linears(*model)) {
      if (layer->has_adapter("default")) layer->adapter("default").lora_B.normal_(0, 0.05);
    }
  }
  model->train();
  const Tensor ids = at::tensor(std::vector<int64_t>{1, 9, 33, 71, 5, 120, 250, 17}).unsqueeze(0);
  auto run = [&](bool checkpointing) {
    model->set_gradient_checkpointing(checkpointing);
    model->zero_grad();
    const auto out = model->forward(ids, {}, ids);
    out.loss.backward();
    std::vector<Tensor> grads = {out.loss.detach()};
    for (const auto& p : model->parameters()) {
      if (p.requires_grad() && p.grad().defined()) grads.push_back(p.grad().clone());
    }
    return grads;
  };
  const auto plain = run(false), checkpointed = run(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_LT(max_abs_diff(plain[i], checkpointed[i]), 1e-6) << i;
  // With the aux loss, a checkpointed layer would drop its gradient: an error, not a wrong step.
  auto config = model::ModelConfig::load(fixture("mixtral_tiny"));
  config.moe.output_router_logits = true;
  auto mixtral = model::create_causal_lm(config);
  mixtral->train();
  mixtral->set_gradient_checkpointing(true);
  EXPECT_THAT(ranktune::testing::error_of([&] { mixtral->forward(ids, {}, ids); }), HasSubstr("gradient checkpointing"));
  {
    at::NoGradGuard no_grad;  // evaluation is fine
    EXPECT_TRUE(mixtral->forward(ids, {}, ids).aux_loss.defined());
  }
}

std::string config_error(const std::string& json) {
  return ranktune::testing::error_of([&] { model::ModelConfig::from_json(json, "moe/config.json"); });
}

TEST(MoeConfig, ErrorsNameTheFileAndTheKey) {
  const std::string mixtral =
      R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 16, "intermediate_size": 32,
          "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 32, "num_local_experts": 4, )";
  EXPECT_THAT(config_error(mixtral + R"("num_experts_per_tok": 5})"),
              AllOf(HasSubstr("moe/config.json"), HasSubstr("num_experts_per_tok"), HasSubstr("more than the 4 experts")));
  EXPECT_THAT(config_error(mixtral + R"("num_experts_per_tok": 2, "router_jitter_noise": 0.1})"),
              HasSubstr("router_jitter_noise"));
  const auto err = thrown_error([&] { model::ModelConfig::from_json(mixtral + R"("num_experts_per_tok": 5})", "moe/config.json"); });
  EXPECT_EQ(err.context().file, "moe/config.json");
  EXPECT_EQ(err.context().key, "num_experts_per_tok");
  const std::string deepseek =
      R"({"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "hidden_size": 16,
          "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 32,
          "kv_lora_rank": 8, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "moe_intermediate_size": 8,
          "n_routed_experts": 6, "num_experts_per_tok": 2, )";
  EXPECT_THAT(config_error(deepseek + R"("topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2})"),
              AllOf(HasSubstr("n_group"), HasSubstr("must divide n_routed_experts")));
  EXPECT_THAT(config_error(deepseek + R"("topk_method": "gready"})"), AllOf(HasSubstr("topk_method"), HasSubstr("gready")));
  EXPECT_THAT(config_error(deepseek + R"("scoring_func": "sigmoid"})"), HasSubstr("scoring_func"));
  EXPECT_THAT(config_error(R"({"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
          "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 32, "mlp_only_layers": [2]})"),
              AllOf(HasSubstr("mlp_only_layers"), HasSubstr("outside 0..1")));
  // A valid DeepSeek config: layer 0 dense (first_k_dense_replace), layer 1 sparse.
  const auto ok = model::ModelConfig::from_json(deepseek + R"("first_k_dense_replace": 1})", "moe/config.json");
  EXPECT_FALSE(ok.moe.sparse(0));
  EXPECT_TRUE(ok.moe.sparse(1));
  EXPECT_EQ(ok.mla.q_lora_rank, 0);
}

TEST(MoeConfig, SparseLayersFollowEachFamilysRule) {
  const auto qwen = model::ModelConfig::from_json(
      R"({"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 4,
          "num_attention_heads": 2, "vocab_size": 32, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
          "shared_expert_intermediate_size": 8, "decoder_sparse_step": 2, "mlp_only_layers": [3]})");
  EXPECT_EQ(qwen.moe.sparse_layers, std::vector<bool>({false, true, false, false}));
  const auto ds = model::ModelConfig::from_json(
      R"({"architectures": ["DeepseekV2ForCausalLM"], "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 5,
          "num_attention_heads": 2, "vocab_size": 32, "kv_lora_rank": 8, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
          "v_head_dim": 8, "moe_intermediate_size": 8, "n_routed_experts": 4, "num_experts_per_tok": 2,
          "first_k_dense_replace": 1, "moe_layer_freq": 2, "norm_topk_prob": true, "routed_scaling_factor": 2.0})");
  EXPECT_EQ(ds.moe.sparse_layers, std::vector<bool>({false, false, true, false, true}));
  EXPECT_EQ(ds.moe.routed_scaling_factor, 1.0);  // V2 scales only unnormalised weights
}

TEST(MoeModel, RandomModelsOfEveryFamilyRunForwardAndBackward) {
  const std::vector<std::string> configs = {
      R"({"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 2, "vocab_size": 32, "q_lora_rank": 8, "kv_lora_rank": 8, "qk_nope_head_dim": 8,
          "qk_rope_head_dim": 4, "v_head_dim": 8, "moe_intermediate_size": 8, "n_routed_experts": 8, "n_group": 4,
          "topk_group": 2, "num_experts_per_tok": 3, "n_shared_experts": 1, "first_k_dense_replace": 1,
          "norm_topk_prob": true, "routed_scaling_factor": 2.5})",
      R"({"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
          "num_attention_heads": 2, "vocab_size": 32, "num_experts": 4, "num_experts_per_tok": 2,
          "moe_intermediate_size": 8, "shared_expert_intermediate_size": 8})"};
  for (const auto& json : configs) {
    auto model = model::create_causal_lm(model::ModelConfig::from_json(json));
    peft::PeftModel peft_model(model, peft::LoraConfig().r(2).target_modules("all-linear"));
    const Tensor ids = at::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6}).unsqueeze(0);
    model->forward(ids, {}, ids).loss.backward();
    int64_t with_grad = 0;
    for (const auto& p : model->parameters()) with_grad += p.requires_grad() && p.grad().defined() ? 1 : 0;
    EXPECT_GT(with_grad, 0) << json;
  }
}

}  // namespace
