// A recipe's adapter.* keys: LoraConfig's field table as recipe keys (defaults, help, checks, the
// effective config.yaml, docs/config.md), adapter.method and the adapter a run attaches.

#include "peft/lora_config_samples.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/io/file.h"
#include "ranktune/peft/lora_config_fields.h"
#include "ranktune/train/config.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

using namespace ranktune;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
using ranktune::testing::error_of;

namespace {

const char* const kRecipe = R"(model:
  path: some/model
data:
  train_file: some/train.jsonl
)";

train::RunConfig parse(const std::string& adapter_section, const std::vector<std::string>& overrides = {}) {
  return train::RunConfig::parse(std::string(kRecipe) + adapter_section, "recipe.yaml", overrides);
}

// A recipe's YAML value for a field: its JSON text (JSON is YAML flow).
std::string recipe_value(const peft::LoraConfigField& f, const peft::LoraConfig& c) { return f.value_json(c); }

// The adapter section of the effective configuration (config.yaml) as text.
std::string adapter_yaml(const train::RunConfig& c) {
  const std::string yaml = c.to_yaml();
  const size_t begin = yaml.find("\nadapter:\n");
  return yaml.substr(begin, yaml.find("\ntrain:\n") - begin) + "\n";
}

std::vector<std::string> captured_warnings(const std::function<void()>& run) {
  std::vector<std::string> warnings;
  auto previous = set_log_sink([&](LogLevel level, const std::string& m) {
    if (level == LogLevel::warning) warnings.push_back(m);
  });
  try {
    run();
  } catch (...) {
    set_log_sink(previous);
    throw;
  }
  set_log_sink(previous);
  return warnings;
}

}  // namespace

TEST(RecipeAdapterTest, EveryLoraConfigFieldIsARecipeKeyWithTheCppDefault) {
  const train::RunConfig c = parse("");
  const std::string adapter = adapter_yaml(c);
  for (const auto& f : peft::lora_config_fields()) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(f.value_json(c.adapter.lora), f.default_json());
    if (f.is_recipe_key()) {
      EXPECT_THAT(adapter, HasSubstr("\n  " + f.name + ":")) << "config.yaml lacks adapter." << f.name;
      EXPECT_NO_THROW(parse("", {"adapter." + f.name + "=" + f.default_json()}));
    } else {
      EXPECT_THAT(adapter, Not(HasSubstr("\n  " + f.name + ":")));
      EXPECT_THAT(error_of([&] { parse("", {"adapter." + f.name + "=" + f.default_json()}); }), HasSubstr("unknown key"));
    }
  }
}

TEST(RecipeAdapterTest, EveryRecipeFieldRoundTripsThroughYaml) {
  const peft::LoraConfig every = ranktune::testing::lora_config_with_every_field();
  std::string section = "adapter:\n";
  for (const auto& f : peft::lora_config_fields()) {
    if (f.is_recipe_key()) section += "  " + f.name + ": " + recipe_value(f, every) + "\n";
  }
  const train::RunConfig c = parse(section);
  const train::RunConfig again = train::RunConfig::parse(c.to_yaml(), "config.yaml");
  EXPECT_EQ(again.to_yaml(), c.to_yaml());
  for (const auto& f : peft::lora_config_fields()) {
    if (!f.is_recipe_key()) continue;
    EXPECT_EQ(f.value_json(c.adapter.lora), f.value_json(every)) << f.name;
    EXPECT_EQ(f.value_json(again.adapter.lora), f.value_json(every)) << f.name;
  }
  // The same values as dotted overrides.
  std::vector<std::string> overrides;
  for (const auto& f : peft::lora_config_fields()) {
    if (f.is_recipe_key()) overrides.push_back("adapter." + f.name + "=" + recipe_value(f, every));
  }
  const train::RunConfig overridden = parse("", overrides);
  EXPECT_EQ(overridden.to_yaml(), c.to_yaml());
}

TEST(RecipeAdapterTest, PatternsKeepTheRecipesOrderWhereTheFirstMatchWins) {
  // "layers.1.v_proj" sorts first, but the recipe puts "v_proj" first: it must win for every v_proj.
  const auto c = parse("adapter:\n  rank_pattern: {v_proj: 4, layers.1.v_proj: 2}\n  alpha_pattern: {v_proj: 8, k_proj: 2}\n");
  const peft::RankPattern ranks = {{"v_proj", 4}, {"layers.1.v_proj", 2}};
  const peft::AlphaPattern alphas = {{"v_proj", 8.0}, {"k_proj", 2.0}};
  EXPECT_EQ(c.adapter.lora.rank_pattern(), ranks);
  EXPECT_EQ(c.adapter.lora.alpha_pattern(), alphas);
  const auto again = train::RunConfig::parse(c.to_yaml(), "config.yaml");
  EXPECT_EQ(again.adapter.lora.rank_pattern(), ranks);
  EXPECT_EQ(again.adapter.lora.alpha_pattern(), alphas);
  EXPECT_EQ(parse("", {"adapter.rank_pattern={v_proj: 4, layers.1.v_proj: 2}"}).adapter.lora.rank_pattern(), ranks);
}

TEST(RecipeAdapterTest, ValuesAreCheckedAsAdapterConfigJsonChecksThem) {
  EXPECT_THAT(error_of([] { parse("adapter:\n  r: 0\n"); }), HasSubstr("recipe.yaml: 'adapter.r': must be a positive integer"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  bias: some\n"); }), HasSubstr("allowed: none, all, lora_only"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  lora_dropout: 1.5\n"); }), HasSubstr("'adapter.lora_dropout'"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  target_modules: [q_proj]\n  layers_pattern: layers\n"); }),
              HasSubstr("'adapter.layers_pattern'"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  use_dora: maybe\n"); }), HasSubstr("recipe.yaml:6: 'adapter.use_dora': expected true or false"));
  // PEFT's one-entry forms: a single layer index, a single module name.
  const auto c = parse("adapter:\n  target_modules: [q_proj]\n  layers_to_transform: 1\n  layers_pattern: layers\n"
                       "  modules_to_save: lm_head\n");
  EXPECT_EQ(c.adapter.lora.layers_to_transform(), std::optional<std::vector<int64_t>>(std::vector<int64_t>{1}));
  EXPECT_EQ(c.adapter.lora.modules_to_save(), std::optional<std::vector<std::string>>(std::vector<std::string>{"lm_head"}));
}

TEST(RecipeAdapterTest, UnknownAdapterKeysNameTheNearestOne) {
  const std::string in_file = error_of([] { parse("adapter:\n  lora_alpah: 16\n"); });
  EXPECT_THAT(in_file, HasSubstr("recipe.yaml:6: 'adapter.lora_alpah': unknown key (did you mean 'lora_alpha'?)"));
  EXPECT_THAT(error_of([] { parse("", {"adapter.use_dorra=true"}); }), HasSubstr("did you mean 'adapter.use_dora'"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  ensure_weight_tyng: true\n"); }), HasSubstr("did you mean 'ensure_weight_tying'"));
}

TEST(RecipeAdapterTest, UseDoraIsPeftsSpellingAndMethodDoraItsShorthand) {
  const auto peft_spelling = parse("adapter:\n  use_dora: true\n  target_modules: all-linear\n");
  const auto shorthand = parse("adapter:\n  method: dora\n  target_modules: all-linear\n");
  const auto both = parse("adapter:\n  method: dora\n  use_dora: true\n  target_modules: all-linear\n");
  for (const auto* c : {&peft_spelling, &shorthand, &both}) {
    EXPECT_EQ(c->adapter.method, train::AdapterMethod::lora);
    EXPECT_TRUE(c->adapter.lora.use_dora());
    EXPECT_EQ(c->adapter.training_method(), "dora");
    EXPECT_EQ(c->adapter_config().to_json(), peft_spelling.adapter_config().to_json());
  }
  EXPECT_EQ(parse("adapter:\n  target_modules: all-linear\n").adapter.training_method(), "lora");
  // The effective config spells it PEFT's way, and reads back the same.
  EXPECT_THAT(shorthand.to_yaml(), HasSubstr("method: lora"));
  EXPECT_TRUE(train::RunConfig::parse(shorthand.to_yaml(), "config.yaml").adapter.lora.use_dora());
}

TEST(RecipeAdapterTest, ContradictoryMethodsAreErrorsNamingTheKeys) {
  const std::string dora = error_of([] { parse("adapter:\n  method: dora\n  use_dora: false\n"); });
  EXPECT_THAT(dora, HasSubstr("recipe.yaml:6: 'adapter.method': is dora"));
  EXPECT_THAT(dora, HasSubstr("adapter.use_dora is false"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  use_dora: false\n", {"adapter.method=dora"}); }),
              HasSubstr("'adapter.method': is dora"));

  const std::string full = error_of([] { parse("adapter:\n  method: full\n  r: 16\n  target_modules: all-linear\n"); });
  EXPECT_THAT(full, HasSubstr("'adapter.method': is full"));
  EXPECT_THAT(full, HasSubstr("adapter.r, adapter.target_modules cannot apply"));
  EXPECT_THAT(error_of([] { parse("adapter:\n  method: full\n", {"adapter.r=4"}); }), HasSubstr("adapter.r cannot apply"));
  EXPECT_THAT(error_of([] { parse("", {"adapter.method=full", "adapter.lora_alpha=4"}); }),
              HasSubstr("adapter.lora_alpha cannot apply"));
}

TEST(RecipeAdapterTest, FullOnTheCommandLineSwitchesARecipeToFullFineTuning) {
  train::RunConfig c;
  const auto warnings = captured_warnings([&] {
    c = parse("adapter:\n  r: 16\n  target_modules: all-linear\n", {"adapter.method=full"});
  });
  EXPECT_EQ(c.adapter.training_method(), "full");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("ignoring the recipe's adapter.r, adapter.target_modules"));
  // Its config.yaml has no adapter fields, so the run directory's recipe reads back as it ran.
  const std::string yaml = c.to_yaml();
  EXPECT_THAT(yaml, HasSubstr("method: full"));
  EXPECT_THAT(yaml, Not(HasSubstr("target_modules")));
  EXPECT_EQ(train::RunConfig::parse(yaml, "config.yaml").adapter.training_method(), "full");
  EXPECT_THAT(error_of([&] { c.adapter_config(); }), HasSubstr("'adapter.method': is full"));
}

TEST(RecipeAdapterTest, TheRunsAdapterNeedsTargetModules) {
  const std::string message = error_of([] { parse("").adapter_config(); });
  EXPECT_THAT(message, HasSubstr("recipe.yaml: 'adapter.target_modules': is not set"));
  EXPECT_THAT(message, HasSubstr("all-linear"));
  const peft::LoraConfig attached = parse("adapter:\n  target_modules: [q_proj, v_proj]\n  r: 4\n").adapter_config();
  EXPECT_EQ(attached.r(), 4);
  EXPECT_EQ(attached.task_type(), std::optional<std::string>("CAUSAL_LM"));
  EXPECT_EQ(attached.base_model_name_or_path(), std::optional<std::string>("some/model"));
}

TEST(RecipeAdapterTest, DocsConfigMdListsEveryFieldWithItsDefault) {
  const std::string docs = io::read_file(std::string(RANKTUNE_SOURCE_DIR) + "/docs/config.md");
  for (const auto& f : peft::lora_config_fields()) {
    SCOPED_TRACE(f.name);
    if (f.is_recipe_key()) {
      const json d = json::parse(f.default_json());
      const std::string shown = d.is_string() ? d.get<std::string>() : f.default_json();
      EXPECT_THAT(docs, HasSubstr("| `adapter." + f.name + "` | `" + shown + "` | " + f.help));
    } else {
      EXPECT_THAT(docs, HasSubstr("`" + f.name + "` (" + f.outside_recipes + ")"));
    }
  }
}

TEST(RunConfigTest, ABadValueFromAnOverrideIsBlamedOnTheCommandLine) {
  EXPECT_EQ(error_of([] { parse("adapter:\n  r: 8\n", {"adapter.r=0"}); }).rfind("command line: 'adapter.r': ", 0), 0u)
      << error_of([] { parse("adapter:\n  r: 8\n", {"adapter.r=0"}); });
  EXPECT_EQ(error_of([] { parse("", {"train.lr=-1"}); }), "command line: 'train.lr': must be positive");
  // The same values in the file are blamed on the file.
  EXPECT_EQ(error_of([] { parse("adapter:\n  r: 0\n"); }).rfind("recipe.yaml: 'adapter.r': ", 0), 0u);
  EXPECT_EQ(error_of([] { parse("train:\n  lr: -1\n"); }), "recipe.yaml: 'train.lr': must be positive");
}
