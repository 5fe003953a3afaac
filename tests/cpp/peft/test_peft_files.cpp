// Adapter files laid out exactly as Hugging Face PEFT 0.12 lays them out (the keys are written here
// by hand, as PEFT names them), read by ranktune, and ranktune's own files checked key by key:
// trained biases under `base_layer`, modules_to_save copies, GPT-2's fan_in_fan_out, provenance,
// and adapters that do not fit the model.

#include "peft/peft_test_models.h"
#include "ranktune/io/file.h"
#include "ranktune/peft/peft_model.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>

namespace ranktune {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CapturedWarnings;
using testing::error_of;
using testing::fresh_dir;
using testing::max_abs_diff;
using testing::parameter;
using testing::tiny_causal_lm;
using testing::tiny_input_ids;
using testing::write_peft_adapter;
using torch::Tensor;

const std::string kPrefix = "base_model.model.";

std::map<std::string, Tensor> read_all(const std::filesystem::path& dir) {
  const auto file = io::SafetensorsFile::open((dir / "adapter_model.safetensors").string());
  std::map<std::string, Tensor> out;
  for (const auto& name : file.names()) out.emplace(name, file.tensor(name).clone());
  return out;
}

nlohmann::json read_config(const std::filesystem::path& dir) {
  return nlohmann::json::parse(io::read_file((dir / "adapter_config.json").string()));
}

// LoRA factors for q_proj and v_proj of both layers of the tiny Qwen2, as PEFT names them.
io::NamedTensors qv_lora(int64_t r = 2) {
  io::NamedTensors t;
  for (int layer = 0; layer < 2; ++layer) {
    for (const auto& [proj, out] : std::vector<std::pair<std::string, int64_t>>{{"q_proj", 16}, {"v_proj", 8}}) {
      const std::string module = c10::str("model.layers.", layer, ".self_attn.", proj);
      t.emplace_back(peft::peft_adapter_key(module, "lora_A"), at::randn({r, 16}));
      t.emplace_back(peft::peft_adapter_key(module, "lora_B"), at::randn({out, r}));
    }
  }
  return t;
}

// PEFT 0.12, bias="all": an adapted layer's bias is `<layer>.base_layer.bias`, any other bias keeps
// its own name (PEFT wraps the adapted layer, so its bias moves under base_layer).
io::NamedTensors with_all_biases(io::NamedTensors t, const std::string& adapted_bias_suffix) {
  for (int layer = 0; layer < 2; ++layer) {
    const std::string attn = c10::str("model.layers.", layer, ".self_attn.");
    t.emplace_back(kPrefix + attn + "q_proj" + adapted_bias_suffix, at::randn({16}));
    t.emplace_back(kPrefix + attn + "k_proj.bias", at::randn({8}));
    t.emplace_back(kPrefix + attn + "v_proj" + adapted_bias_suffix, at::randn({8}));
  }
  return t;
}

const char* const kQvAll = R"({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "bias": "all"})";

TEST(PeftFilesTest, BiasAllFromPeftLoadsFromBaseLayerKeysAndIsWrittenBackTheSame) {
  at::manual_seed(1);
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  const auto dir = fresh_dir("peft_bias_all");
  const io::NamedTensors written = with_all_biases(qv_lora(), ".base_layer.bias");
  write_peft_adapter(dir, kQvAll, written);

  auto peft_model = peft::PeftModel::from_pretrained(model, dir.string());
  EXPECT_TRUE(parameter(*model, "model.layers.1.self_attn.q_proj.bias")
                  .equal(read_all(dir).at(kPrefix + "model.layers.1.self_attn.q_proj.base_layer.bias")));
  EXPECT_TRUE(parameter(*model, "model.layers.0.self_attn.k_proj.bias")
                  .equal(read_all(dir).at(kPrefix + "model.layers.0.self_attn.k_proj.bias")));

  const auto again = fresh_dir("peft_bias_all_again");
  peft_model.save_pretrained(again.string());
  const auto original = read_all(dir), saved = read_all(again);
  ASSERT_EQ(saved.size(), original.size());
  for (const auto& [key, tensor] : original) {
    ASSERT_EQ(saved.count(key), 1u) << key;
    EXPECT_TRUE(saved.at(key).equal(tensor)) << key;
  }
}

TEST(PeftFilesTest, RanktunesOlderBiasKeysStillLoadWithAWarning) {
  at::manual_seed(2);
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  const auto dir = fresh_dir("peft_bias_legacy");
  write_peft_adapter(dir, kQvAll, with_all_biases(qv_lora(), ".bias"));  // before ranktune followed PEFT
  CapturedWarnings warnings;
  peft::PeftModel::from_pretrained(model, dir.string());
  EXPECT_THAT(warnings.text(), HasSubstr("4 bias(es) under ranktune's older name"));
  EXPECT_THAT(warnings.text(), HasSubstr("base_layer.bias"));
  EXPECT_TRUE(parameter(*model, "model.layers.0.self_attn.v_proj.bias")
                  .equal(read_all(dir).at(kPrefix + "model.layers.0.self_attn.v_proj.bias")));
}

TEST(PeftFilesTest, LoraOnlyWritesBaseLayerBiasesAndReadsPeftFilesThatHaveNone) {
  at::manual_seed(3);
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  const Tensor k_bias = parameter(*model, "model.layers.0.self_attn.k_proj.bias").clone();
  const Tensor q_bias = parameter(*model, "model.layers.0.self_attn.q_proj.bias").clone();
  // PEFT 0.12 looks for "<layer>.bias" next to the LoRA keys, finds none and saves no bias.
  const auto peft_dir = fresh_dir("peft_lora_only");
  const char* config = R"({"r": 2, "target_modules": ["q_proj", "v_proj"], "bias": "lora_only"})";
  write_peft_adapter(peft_dir, config, qv_lora());
  CapturedWarnings warnings;
  auto peft_model = peft::PeftModel::from_pretrained(model, peft_dir.string(), "default", /*is_trainable=*/true);
  EXPECT_THAT(warnings.text(), HasSubstr("no bias for 4 adapted layer(s) (PEFT 0.12 does not save them)"));
  EXPECT_TRUE(parameter(*model, "model.layers.0.self_attn.q_proj.bias").equal(q_bias));
  EXPECT_TRUE(parameter(*model, "model.layers.0.self_attn.q_proj.bias").requires_grad());
  EXPECT_FALSE(parameter(*model, "model.layers.0.self_attn.k_proj.bias").requires_grad());

  const auto ours = fresh_dir("peft_lora_only_ours");
  peft_model.save_pretrained(ours.string());
  const auto saved = read_all(ours);
  EXPECT_EQ(saved.count(kPrefix + "model.layers.0.self_attn.q_proj.base_layer.bias"), 1u);
  EXPECT_EQ(saved.count(kPrefix + "model.layers.1.self_attn.v_proj.base_layer.bias"), 1u);
  EXPECT_EQ(saved.count(kPrefix + "model.layers.0.self_attn.k_proj.bias"), 0u);  // not adapted
  EXPECT_EQ(saved.count(kPrefix + "model.layers.0.self_attn.q_proj.bias"), 0u);
  EXPECT_TRUE(parameter(*model, "model.layers.0.self_attn.k_proj.bias").equal(k_bias));
}

TEST(PeftFilesTest, ModulesToSaveOnATiedHeadLoadsAsACopyAndLeavesTheEmbeddingsAlone) {
  at::manual_seed(4);
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  const Tensor ids = tiny_input_ids();
  const Tensor base_logits = model->forward(ids).logits;
  const Tensor embeddings = parameter(*model, "model.embed_tokens.weight").clone();
  const auto dir = fresh_dir("peft_mts_tied_head");
  io::NamedTensors t = qv_lora();
  const Tensor head = at::randn({40, 16});
  t.emplace_back(kPrefix + "lm_head.weight", head);  // PEFT: <module>.modules_to_save.<adapter>.weight saved as <module>.weight
  write_peft_adapter(dir, R"({"r": 2, "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]})", t);

  auto peft_model = peft::PeftModel::from_pretrained(model, dir.string());
  EXPECT_TRUE(parameter(*model, "lm_head.modules_to_save.default.weight").equal(head));
  EXPECT_EQ(model->named_parameters().find("lm_head.weight"), nullptr);  // tied: listed once, as the embeddings
  EXPECT_TRUE(parameter(*model, "model.embed_tokens.weight").equal(embeddings));
  const Tensor adapted = model->forward(ids).logits;
  {
    peft::DisabledAdapters off(peft_model);
    EXPECT_EQ(max_abs_diff(model->forward(ids).logits, base_logits), 0.0);  // the original head, untouched
  }
  EXPECT_EQ(max_abs_diff(model->forward(ids).logits, adapted), 0.0);

  const auto again = fresh_dir("peft_mts_tied_head_again");
  peft_model.save_pretrained(again.string());
  const auto saved = read_all(again);
  EXPECT_TRUE(saved.at(kPrefix + "lm_head.weight").equal(head));
  EXPECT_EQ(saved.count(kPrefix + "model.embed_tokens.weight"), 0u);
  EXPECT_EQ(read_config(again).count("ensure_weight_tying"), 0u);  // PEFT 0.12 rejects unknown fields
}

TEST(PeftFilesTest, EnsureWeightTyingSavesBothEndsAndLoadsFromEither) {
  at::manual_seed(5);
  auto model = tiny_causal_lm("qwen2", /*tied=*/true);
  peft::PeftModel peft_model(model, peft::LoraConfig().r(2).target_modules({"q_proj"}).modules_to_save(
                                        std::vector<std::string>{"embed_tokens"}).ensure_weight_tying(true));
  {
    at::NoGradGuard no_grad;
    parameter(*model, "model.embed_tokens.modules_to_save.default.weight").add_(1.0);
  }
  const auto dir = fresh_dir("peft_ensure_tying");
  peft_model.save_pretrained(dir.string());
  const auto saved = read_all(dir);
  // As PEFT >= 0.18 writes it: the one copy under both names.
  ASSERT_EQ(saved.count(kPrefix + "model.embed_tokens.weight"), 1u);
  ASSERT_EQ(saved.count(kPrefix + "lm_head.weight"), 1u);
  EXPECT_TRUE(saved.at(kPrefix + "lm_head.weight").equal(saved.at(kPrefix + "model.embed_tokens.weight")));
  EXPECT_EQ(read_config(dir).at("ensure_weight_tying"), true);

  // A file with only the head's name: both ends use it.
  const auto head_only = fresh_dir("peft_ensure_tying_head_only");
  io::NamedTensors t;
  for (const auto& [key, tensor] : saved) {
    if (key != kPrefix + "model.embed_tokens.weight") t.emplace_back(key, tensor);
  }
  write_peft_adapter(head_only, R"({"r": 2, "target_modules": ["q_proj"], "modules_to_save": ["lm_head"],
                                   "ensure_weight_tying": true})", t);
  auto fresh = tiny_causal_lm("qwen2", /*tied=*/true);
  peft::PeftModel::from_pretrained(fresh, head_only.string());
  auto& head = fresh->lm_head_layer();
  auto* embed = fresh->named_modules()["model.embed_tokens"]->as<torch::nn::EmbeddingImpl>();
  EXPECT_TRUE(head.weight.is_same(embed->weight));
  EXPECT_TRUE(head.weight.equal(saved.at(kPrefix + "lm_head.weight")));
}

TEST(PeftFilesTest, Gpt2AdaptersSayFanInFanOutAndWhichBaseModelTheyAreFor) {
  auto model = tiny_causal_lm("gpt2", /*tied=*/true);
  model->set_name_or_path("models/tiny-gpt2");
  CapturedWarnings warnings;
  peft::PeftModel peft_model(model, peft::LoraConfig().r(2).target_modules({"c_attn", "c_fc"}));
  const auto dir = fresh_dir("peft_gpt2_layout");
  peft_model.save_pretrained(dir.string());
  const auto config = read_config(dir);
  EXPECT_EQ(config.at("fan_in_fan_out"), true);  // Conv1D layers store [in, out]
  EXPECT_EQ(config.at("base_model_name_or_path"), "models/tiny-gpt2");
  EXPECT_EQ(config.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(peft_model.config("default").base_model_name_or_path(), std::optional<std::string>("models/tiny-gpt2"));
  // Shapes as PEFT's Conv1D LoRA: A [r, in], B [out, r].
  EXPECT_EQ(read_all(dir).at(peft::peft_adapter_key("transformer.h.0.attn.c_attn", "lora_B")).sizes(),
            torch::IntArrayRef({48, 2}));

  // And a PEFT GPT-2 file (fan_in_fan_out true) loads as it is.
  auto other = tiny_causal_lm("gpt2", /*tied=*/true);
  const Tensor expected = [&] {
    at::NoGradGuard no_grad;
    for (auto& [name, linear] : peft::find_linears(*model)) {
      if (linear->has_adapter("default")) linear->adapter("default").lora_B.normal_();
    }
    peft_model.save_pretrained(dir.string());
    return model->forward(tiny_input_ids()).logits;
  }();
  peft::PeftModel::from_pretrained(other, dir.string());
  EXPECT_LT(max_abs_diff(other->forward(tiny_input_ids()).logits, expected), 1e-6);
}

TEST(PeftFilesTest, AnAdapterForAnotherModelNamesTheFirstFewKeysAndLoadsNothing) {
  at::manual_seed(6);
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  std::map<std::string, Tensor> before;
  for (const auto& p : model->named_parameters()) before.emplace(p.key(), p.value().clone());
  // Made for a model whose layers are named differently: 8 decoder layers, none of them here.
  io::NamedTensors t;
  for (int layer = 0; layer < 8; ++layer) {
    for (const char* proj : {"q_proj", "v_proj"}) {
      const std::string module = c10::str("model.decoder.layers.", layer, ".self_attn.", proj);
      t.emplace_back(peft::peft_adapter_key(module, "lora_A"), at::randn({2, 16}));
      t.emplace_back(peft::peft_adapter_key(module, "lora_B"), at::randn({16, 2}));
    }
  }
  const auto dir = fresh_dir("peft_wrong_base");
  write_peft_adapter(dir, R"({"r": 2, "target_modules": ["q_proj", "v_proj"],
                               "base_model_name_or_path": "facebook/opt-125m"})", t);
  const std::string message = error_of([&] { peft::PeftModel::from_pretrained(model, dir.string()); });
  EXPECT_THAT(message, HasSubstr("adapter_model.safetensors"));
  EXPECT_THAT(message, HasSubstr("nothing was loaded"));
  EXPECT_THAT(message, HasSubstr("8 of the 8 tensors this model expects are not in the file"));
  EXPECT_THAT(message, HasSubstr("wrong base model (the adapter was made for facebook/opt-125m)"));
  EXPECT_THAT(message, HasSubstr("missing (8): base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_THAT(message, HasSubstr("and 3 more"));
  EXPECT_THAT(message, HasSubstr("not used by any layer (32): "));
  EXPECT_THAT(message, HasSubstr("and 27 more"));
  EXPECT_LT(message.size(), 1200u) << message;  // a few names, not every key
  for (auto& [name, linear] : peft::find_linears(*model)) EXPECT_TRUE(linear->adapter_names().empty()) << name;
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(p.value().equal(before.at(p.key()))) << p.key();
}

TEST(PeftFilesTest, AFewMisfitKeysAreNamedWithoutBlamingTheBaseModel) {
  at::manual_seed(7);
  auto model = tiny_causal_lm("qwen2", /*tied=*/false);
  io::NamedTensors t;
  for (auto& [key, tensor] : qv_lora()) {
    if (key == peft::peft_adapter_key("model.layers.1.self_attn.v_proj", "lora_B")) continue;  // missing
    if (key == peft::peft_adapter_key("model.layers.0.self_attn.q_proj", "lora_A")) {
      t.emplace_back(key, at::randn({4, 16}));  // rank 4 in a rank-2 adapter
    } else {
      t.emplace_back(key, tensor);
    }
  }
  const auto dir = fresh_dir("peft_misfit");
  write_peft_adapter(dir, R"({"r": 2, "target_modules": ["q_proj", "v_proj"]})", t);
  const std::string message = error_of([&] { peft::PeftModel::from_pretrained(model, dir.string()); });
  EXPECT_THAT(message, Not(HasSubstr("wrong base model")));
  EXPECT_THAT(message, HasSubstr("missing (1): base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
  EXPECT_THAT(message, HasSubstr("wrong shape (1): base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: "
                                 "file [4, 16] vs model [2, 16]"));
  EXPECT_THAT(message, HasSubstr("do target_modules, rank_pattern and modules_to_save match the file?"));
  for (auto& [name, linear] : peft::find_linears(*model)) EXPECT_TRUE(linear->adapter_names().empty()) << name;
}

}  // namespace
}  // namespace ranktune
