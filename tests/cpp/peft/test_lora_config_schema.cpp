// LoraConfig's field table: it covers every field, and the JSON codec and AdapterOptions built from
// it agree with the C++ defaults. (Recipes: tests/cpp/train/test_config_adapter.cpp; Python:
// tests/python/test_lora_config_schema.py.)

#include "peft/lora_config_samples.h"
#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/lora_config_fields.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <map>
#include <regex>
#include <set>

using ranktune::peft::AdapterOptions;
using ranktune::peft::LoraConfig;
using ranktune::peft::LoraConfigField;
using ranktune::peft::lora_config_fields;
using ::testing::HasSubstr;
using json = nlohmann::json;

namespace {

// The TORCH_ARG names declared in class LoraConfig, read from the header.
std::set<std::string> declared_fields() {
  const std::string header =
      ranktune::io::read_file(std::string(RANKTUNE_SOURCE_DIR) + "/include/ranktune/peft/lora_config.h");
  const size_t begin = header.find("class LoraConfig {");
  const size_t end = header.find("\n};", begin);
  const std::string body = header.substr(begin, end - begin);
  std::set<std::string> names;
  const std::regex arg(R"(TORCH_ARG\(.*,\s*(\w+)\))");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), arg); it != std::sregex_iterator(); ++it) {
    names.insert((*it)[1]);
  }
  return names;
}

}  // namespace

TEST(LoraConfigSchemaTest, TableHasOneRowPerLoraConfigField) {
  std::set<std::string> rows;
  for (const auto& f : lora_config_fields()) {
    EXPECT_TRUE(rows.insert(f.name).second) << "two rows for " << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_EQ(f.help.find('\n'), std::string::npos) << f.name << ": help is one line";
  }
  const std::set<std::string> declared = declared_fields();
  EXPECT_GE(declared.size(), 20u);  // the header was read
  EXPECT_EQ(rows, declared) << "a TORCH_ARG of LoraConfig without a row in lora_config_fields.cpp, or the reverse";
}

TEST(LoraConfigSchemaTest, JsonDefaultsAreTheCppDefaults) {
  const LoraConfig fresh;
  const LoraConfig read = LoraConfig::from_json("{}");
  const json written = json::parse(fresh.to_json());
  for (const auto& f : lora_config_fields()) {
    SCOPED_TRACE(f.name);
    const json cpp_default = json::parse(f.value_json(fresh));
    EXPECT_EQ(json::parse(f.default_json()), cpp_default);
    EXPECT_EQ(json::parse(f.value_json(read)), cpp_default);  // an absent field reads as the default
    if (f.written == LoraConfigField::Written::always) {
      ASSERT_TRUE(written.contains(f.name));
      EXPECT_EQ(written[f.name], cpp_default);
    } else {
      EXPECT_FALSE(written.contains(f.name)) << "PEFT 0.12 refuses fields it does not know";
    }
  }
}

TEST(LoraConfigSchemaTest, PeftDefaultsSpelledAsPeftWritesThem) {
  // Facts from PEFT 0.12's LoraConfig (lora_alpha is an int there, lora_dropout a float).
  const std::map<std::string, std::string> peft = {
      {"r", "8"},           {"lora_alpha", "8"},           {"lora_dropout", "0.0"},
      {"bias", "\"none\""}, {"target_modules", "null"},    {"init_lora_weights", "true"},
      {"use_dora", "false"}, {"rank_pattern", "{}"},       {"modules_to_save", "null"},
      {"exclude_modules", "null"}, {"ensure_weight_tying", "false"},
  };
  for (const auto& [name, text] : peft) {
    const LoraConfigField* f = ranktune::peft::find_lora_config_field(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->default_json(), text) << name;
  }
  EXPECT_EQ(ranktune::peft::find_lora_config_field("lora_rank"), nullptr);
}

TEST(LoraConfigSchemaTest, EveryFieldRoundTripsThroughJson) {
  const LoraConfig every = ranktune::testing::lora_config_with_every_field();
  for (const auto& f : lora_config_fields()) {
    EXPECT_NE(f.value_json(every), f.default_json()) << f.name << " is at its default in lora_config_samples.h";
  }
  const std::string text = every.to_json();
  const LoraConfig back = LoraConfig::from_json(text, "every.json");
  EXPECT_EQ(back.to_json(), text);
  const json j = json::parse(text);
  for (const auto& f : lora_config_fields()) {
    // (The file's keys are sorted, as PEFT writes them, so a pattern's order may change.)
    EXPECT_EQ(json::parse(f.value_json(back)), json::parse(f.value_json(every))) << f.name;
    EXPECT_TRUE(j.contains(f.name)) << f.name << " is set, so it is written";
  }
}

TEST(LoraConfigSchemaTest, LaterPeftFieldsAreWrittenOnlyWhenSet) {
  for (const auto& f : lora_config_fields()) {
    if (f.written != LoraConfigField::Written::when_set) continue;
    SCOPED_TRACE(f.name);
    LoraConfig c = LoraConfig().target_modules({"q_proj"});
    EXPECT_FALSE(json::parse(c.to_json()).contains(f.name));
    f.set_from_json(c, f.value_json(ranktune::testing::lora_config_with_every_field()));
    EXPECT_TRUE(json::parse(c.to_json()).contains(f.name));
  }
  const auto* tying = ranktune::peft::find_lora_config_field("ensure_weight_tying");
  ASSERT_NE(tying, nullptr);
  EXPECT_EQ(tying->written, LoraConfigField::Written::when_set);
  EXPECT_TRUE(LoraConfig::from_json(R"({"ensure_weight_tying": true})").ensure_weight_tying());
}

TEST(LoraConfigSchemaTest, SetFromJsonChecksTheFormAndNamesTheField) {
  LoraConfig c;
  auto field = [&](const std::string& name) { return *ranktune::peft::find_lora_config_field(name); };
  field("r").set_from_json(c, "16");
  field("target_modules").set_from_json(c, "\"all-linear\"");
  field("bias").set_from_json(c, "\"all\"");
  EXPECT_EQ(c.r(), 16);
  EXPECT_EQ(c.target_modules().kind, ranktune::peft::ModuleSelector::Kind::all_linear);
  EXPECT_EQ(c.bias(), ranktune::peft::LoraBias::all);
  // The error carries the field as its key (a recipe names it adapter.<field>, a file names itself).
  const std::pair<const char*, const char*> bad[] = {{"r", "\"sixteen\""}, {"bias", "\"some\""}, {"use_dora", "1"}};
  const char* expected[] = {"expected an integer", "allowed: none, all, lora_only", "expected true or false"};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(bad[i].first);
    ranktune::ErrorContext where;
    const std::string message = ranktune::testing::error_of([&] {
      try {
        field(bad[i].first).set_from_json(c, bad[i].second);
      } catch (const ranktune::Error& e) {
        where = e.context();
        throw;
      }
    });
    EXPECT_EQ(where.key, bad[i].first);
    EXPECT_THAT(message, HasSubstr(expected[i]));
  }
  EXPECT_EQ(field("bias").choices, (std::vector<std::string>{"none", "all", "lora_only"}));
}

TEST(LoraConfigSchemaTest, AdapterOptionsTakeLoraConfigsDefaultsAndFields) {
  const LoraConfig defaults;
  const AdapterOptions o;
  EXPECT_EQ(o.r(), defaults.r());
  EXPECT_EQ(o.lora_alpha(), defaults.lora_alpha());
  EXPECT_EQ(o.lora_dropout(), defaults.lora_dropout());
  EXPECT_EQ(o.use_rslora(), defaults.use_rslora());
  EXPECT_EQ(o.use_dora(), defaults.use_dora());
  EXPECT_EQ(o.init_lora_weights().to_string(), defaults.init_lora_weights().to_string());
  EXPECT_FALSE(o.dtype().has_value());

  const LoraConfig every = ranktune::testing::lora_config_with_every_field();
  const AdapterOptions layer(every);
  EXPECT_EQ(layer.r(), every.r());
  EXPECT_EQ(layer.lora_alpha(), every.lora_alpha());
  EXPECT_EQ(layer.lora_dropout(), every.lora_dropout());
  EXPECT_EQ(layer.use_rslora(), every.use_rslora());
  EXPECT_EQ(layer.use_dora(), every.use_dora());
  EXPECT_EQ(layer.init_lora_weights().to_string(), "pissa_niter_4");

  // The chained API of the README still reads the same.
  const auto chained = AdapterOptions().r(16).lora_alpha(32).use_dora(true);
  EXPECT_EQ(chained.r(), 16);
  EXPECT_TRUE(chained.use_dora());
  EXPECT_EQ(chained.lora_dropout(), defaults.lora_dropout());
  // Scaling, computed in one place: alpha / r, or alpha / sqrt(r) with rsLoRA.
  EXPECT_DOUBLE_EQ(AdapterOptions().scaling(), 1.0);
  EXPECT_DOUBLE_EQ(AdapterOptions().r(16).lora_alpha(8).use_rslora(true).scaling(), 2.0);
  EXPECT_DOUBLE_EQ(chained.scaling(), 2.0);
}
