// LoraConfig: PEFT's fields, defaults, JSON form and validation.

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/io/file.h"
#include "ranktune/peft/lora_config.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using ranktune::Error;
using ranktune::peft::LoraBias;
using ranktune::peft::LoraConfig;
using ranktune::peft::LoraInit;
using ranktune::peft::ModuleSelector;
using ::testing::HasSubstr;

using ranktune::testing::error_of;

namespace {

}  // namespace

TEST(LoraConfigTest, DefaultsMatchPeft) {
  const LoraConfig c;
  EXPECT_EQ(c.r(), 8);
  EXPECT_EQ(c.lora_alpha(), 8.0);
  EXPECT_EQ(c.lora_dropout(), 0.0);
  EXPECT_EQ(c.bias(), LoraBias::none);
  EXPECT_FALSE(c.use_rslora());
  EXPECT_FALSE(c.use_dora());
  EXPECT_EQ(c.init_lora_weights().kind, LoraInit::Kind::lora);
  EXPECT_FALSE(c.fan_in_fan_out());
  EXPECT_TRUE(c.target_modules().empty());
  EXPECT_FALSE(c.modules_to_save().has_value());
}

TEST(LoraConfigTest, ChainedSettersReadLikePeft) {
  const auto c = LoraConfig().r(16).lora_alpha(32).target_modules({"q_proj", "v_proj"}).use_dora(true);
  EXPECT_EQ(c.r(), 16);
  EXPECT_EQ(c.target_modules().kind, ModuleSelector::Kind::names);
  EXPECT_EQ(c.target_modules().names, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(LoraConfig().target_modules("all-linear").target_modules().kind, ModuleSelector::Kind::all_linear);
  EXPECT_EQ(LoraConfig().target_modules(".*attn.*").target_modules().kind, ModuleSelector::Kind::regex);
}

TEST(LoraConfigTest, PeftFixtureRoundTripsToTheSameJson) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama_dora_adapter/adapter_config.json");
  const std::string path = ranktune::testing::shared_dir() + "/fixtures/hf-tiny/llama_dora_adapter/adapter_config.json";
  const std::string original = ranktune::io::read_file(path);
  const LoraConfig c = LoraConfig::load(path);
  EXPECT_EQ(c.r(), 4);
  EXPECT_EQ(c.lora_alpha(), 8.0);
  EXPECT_TRUE(c.use_dora());
  EXPECT_EQ(c.task_type(), std::optional<std::string>("CAUSAL_LM"));
  EXPECT_EQ(c.target_modules().names.size(), 7u);
  EXPECT_EQ(nlohmann::json::parse(c.to_json()), nlohmann::json::parse(original));
}

TEST(LoraConfigTest, EveryFieldSurvivesSaveAndLoad) {
  const auto dir = std::filesystem::temp_directory_path() / "ranktune_config_roundtrip";
  std::filesystem::remove_all(dir);
  LoraConfig c = LoraConfig()
                     .r(12)
                     .lora_alpha(24.5)
                     .lora_dropout(0.05)
                     .target_modules(".*\\.(q|v)_proj")
                     .bias(LoraBias::lora_only)
                     .use_rslora(true)
                     .init_lora_weights(LoraInit::parse("pissa_niter_4"))
                     .rank_pattern({{"q_proj", 4}, {"layers.1.v_proj", 2}})
                     .alpha_pattern({{"v_proj", 3.0}})
                     .modules_to_save(std::vector<std::string>{"lm_head"})
                     .task_type(std::string("CAUSAL_LM"))
                     .exclude_modules({"layers.0.q_proj"});
  c.save(dir.string());
  const LoraConfig back = LoraConfig::load(dir.string());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.init_lora_weights().kind, LoraInit::Kind::pissa_fast);
  EXPECT_EQ(back.init_lora_weights().niter, 4);
  // Keys come back sorted: PEFT writes JSON with sort_keys=True, and so do we.
  EXPECT_EQ(back.rank_pattern(), (ranktune::peft::RankPattern{{"layers.1.v_proj", 2}, {"q_proj", 4}}));
  EXPECT_EQ(back.exclude_modules().names, std::vector<std::string>{"layers.0.q_proj"});
  EXPECT_EQ(back.bias(), LoraBias::lora_only);
  std::filesystem::remove_all(dir);
}

TEST(LoraConfigTest, WrittenJsonHasPeft012FieldsOnly) {
  // PEFT 0.12 rejects unknown fields, so exclude_modules is left out unless it is set.
  const auto j = nlohmann::json::parse(LoraConfig().target_modules({"q_proj"}).to_json());
  EXPECT_FALSE(j.contains("exclude_modules"));
  for (const char* key : {"alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out",
                          "inference_mode", "init_lora_weights", "layer_replication", "layers_pattern",
                          "layers_to_transform", "loftq_config", "lora_alpha", "lora_dropout", "megatron_config",
                          "megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
                          "target_modules", "task_type", "use_dora", "use_rslora"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j.size(), 24u);
  EXPECT_EQ(j["lora_alpha"], 8);
  EXPECT_TRUE(j["lora_alpha"].is_number_integer());
}

TEST(LoraConfigTest, UnknownFieldIsIgnoredWithAWarning) {
  std::vector<std::string> warnings;
  auto previous = ranktune::set_log_sink([&](ranktune::LogLevel level, const std::string& m) {
    if (level == ranktune::LogLevel::warning) warnings.push_back(m);
  });
  const LoraConfig c = LoraConfig::from_json(R"({"r": 4, "target_modules": ["q_proj"], "shiny_new_field": 3})",
                                             "adapter_config.json");
  ranktune::set_log_sink(previous);
  EXPECT_EQ(c.r(), 4);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("shiny_new_field"));
  EXPECT_THAT(warnings[0], HasSubstr("adapter_config.json"));
}

struct BadConfigCase {
  const char* json;
  const char* field;
  const char* detail;
};

class LoraConfigRejects : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(LoraConfigRejects, NamingTheFieldAndTheFile) {
  const auto& c = GetParam();
  const std::string message = error_of([&] { LoraConfig::from_json(c.json, "cfg/adapter_config.json"); });
  EXPECT_THAT(message, HasSubstr(std::string("'") + c.field + "'")) << c.json;
  EXPECT_THAT(message, HasSubstr("cfg/adapter_config.json")) << c.json;
  EXPECT_THAT(message, HasSubstr(c.detail)) << c.json;
}

INSTANTIATE_TEST_SUITE_P(
    BadValues, LoraConfigRejects,
    ::testing::Values(BadConfigCase{R"({"r": 0})", "r", "positive"},
                      BadConfigCase{R"({"r": -3})", "r", "positive"},
                      BadConfigCase{R"({"r": 2.5})", "r", "integer"},
                      BadConfigCase{R"({"lora_alpha": -8})", "lora_alpha", "positive"},
                      BadConfigCase{R"({"lora_dropout": 1.5})", "lora_dropout", "[0, 1)"},
                      BadConfigCase{R"({"init_lora_weights": "xavier"})", "init_lora_weights", "gaussian"},
                      BadConfigCase{R"({"init_lora_weights": "pissa_niter_x"})", "init_lora_weights", "pissa_niter_"},
                      BadConfigCase{R"({"target_modules": "q_proj(["})", "target_modules", "regular expression"},
                      BadConfigCase{R"({"exclude_modules": "(("})", "exclude_modules", "regular expression"},
                      BadConfigCase{R"({"rank_pattern": {"q_proj": 0}})", "rank_pattern", "positive"},
                      BadConfigCase{R"({"alpha_pattern": {"q_proj": -1}})", "alpha_pattern", "positive"},
                      BadConfigCase{R"({"bias": "some"})", "bias", "lora_only"},
                      BadConfigCase{R"({"use_dora": "yes"})", "use_dora", "true or false"},
                      BadConfigCase{R"({"peft_type": "IA3"})", "peft_type", "LORA"},
                      BadConfigCase{R"({"task_type": "CAUSAL"})", "task_type", "CAUSAL_LM"},
                      BadConfigCase{R"({"layers_pattern": "layers"})", "layers_pattern", "layers_to_transform"},
                      BadConfigCase{R"({"target_modules": ".*", "layers_to_transform": [0]})", "layers_to_transform",
                                    "regex"},
                      BadConfigCase{R"({"lora_bias": true})", "lora_bias", "not supported"}));

TEST(LoraConfigTest, ValidateNamesTheFieldForConfigsBuiltInCode) {
  EXPECT_THAT(error_of([] { LoraConfig().r(0).validate(); }), HasSubstr("'r': must be a positive integer, got 0"));
  EXPECT_THAT(error_of([] { LoraConfig().lora_alpha(-1).validate(); }), HasSubstr("'lora_alpha'"));
  EXPECT_THAT(error_of([] { LoraConfig().lora_dropout(1.5).validate(); }), HasSubstr("'lora_dropout': must be in [0, 1), got 1.5"));
  EXPECT_THAT(error_of([] { LoraInit::parse("kaiming"); }), HasSubstr("'init_lora_weights'"));
  EXPECT_THAT(error_of([] { LoraConfig().target_modules("([a-z]+").validate(); }), HasSubstr("'target_modules'"));
}

TEST(LoraConfigTest, InvalidJsonNamesTheFile) {
  const std::string message = error_of([] { LoraConfig::from_json("{\"r\": 4,", "broken/adapter_config.json"); });
  EXPECT_THAT(message, HasSubstr("broken/adapter_config.json"));
  EXPECT_THAT(message, HasSubstr("invalid JSON"));
}

TEST(LoraConfigTest, MissingFileNamesThePath) {
  EXPECT_THAT(error_of([] { LoraConfig::load("/nonexistent/dir/adapter_config.json"); }),
              HasSubstr("/nonexistent/dir/adapter_config.json: file not found"));
}

TEST(LoraConfigTest, SaveRefusesAnInvalidConfigAndWritesNothing) {
  const auto dir = std::filesystem::temp_directory_path() / "ranktune_config_invalid";
  std::filesystem::remove_all(dir);
  EXPECT_THAT(error_of([&] { LoraConfig().r(0).save(dir.string()); }), HasSubstr("'r'"));
  EXPECT_FALSE(std::filesystem::exists(dir / "adapter_config.json"));
}
