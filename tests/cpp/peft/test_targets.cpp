// Which modules a config adapts: a table of module names against every kind of selector.

#include "ranktune/peft/targets.h"

#include <gtest/gtest.h>

using ranktune::peft::AdapterOptions;
using ranktune::peft::LoraConfig;
using ranktune::peft::TargetMatcher;

namespace {

const std::vector<std::string> kLinearNames = {
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj",
    "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj",    "model.layers.0.mlp.up_proj",
    "model.layers.0.mlp.down_proj",    "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
    "model.layers.12.self_attn.q_proj", "lm_head"};

struct MatchCase {
  const char* description;
  LoraConfig config;
  std::string module;
  bool expected;
};

class TargetMatching : public ::testing::TestWithParam<MatchCase> {};

TEST_P(TargetMatching, SelectsAsPeftDoes) {
  const MatchCase& c = GetParam();
  const TargetMatcher matcher(c.config, kLinearNames);
  EXPECT_EQ(matcher.is_target(c.module), c.expected) << c.description << ": " << c.module;
}

std::vector<MatchCase> cases() {
  const auto names = LoraConfig().target_modules({"q_proj", "v_proj"});
  const auto layered = LoraConfig().target_modules({"q_proj"}).layers_to_transform(std::vector<int64_t>{0, 12});
  const auto layered_pattern = LoraConfig()
                                   .target_modules({"q_proj"})
                                   .layers_to_transform(std::vector<int64_t>{1})
                                   .layers_pattern(std::vector<std::string>{"layers"});
  const auto wrong_pattern = LoraConfig()
                                 .target_modules({"q_proj"})
                                 .layers_to_transform(std::vector<int64_t>{1})
                                 .layers_pattern(std::vector<std::string>{"blocks"});
  const auto regex = LoraConfig().target_modules(".*\\.layers\\.0\\..*_proj");
  const auto all_linear = LoraConfig().target_modules("all-linear");
  const auto excluded = LoraConfig().target_modules("all-linear").exclude_modules({"layers.0.mlp.down_proj", "o_proj"});
  const auto excluded_regex = LoraConfig().target_modules({"q_proj"}).exclude_modules(".*layers\\.1\\..*");
  return {
      {"list: last component", names, "model.layers.0.self_attn.q_proj", true},
      {"list: other projection", names, "model.layers.0.self_attn.k_proj", false},
      {"list: exact full name", LoraConfig().target_modules({"model.layers.0.mlp.up_proj"}),
       "model.layers.0.mlp.up_proj", true},
      {"list: dotted suffix", LoraConfig().target_modules({"mlp.up_proj"}), "model.layers.0.mlp.up_proj", true},
      {"list: partial component is no match", LoraConfig().target_modules({"proj"}), "model.layers.0.mlp.up_proj",
       false},
      {"list: suffix of a component is no match", LoraConfig().target_modules({"_proj"}),
       "model.layers.0.mlp.up_proj", false},
      {"regex: full match", regex, "model.layers.0.self_attn.q_proj", true},
      {"regex: other layer", regex, "model.layers.1.self_attn.q_proj", false},
      {"regex: must match whole name", LoraConfig().target_modules("q_proj"), "model.layers.0.self_attn.q_proj", false},
      {"all-linear: projections", all_linear, "model.layers.0.mlp.down_proj", true},
      {"all-linear: not the output head", all_linear, "lm_head", false},
      {"exclude: listed suffix", excluded, "model.layers.0.mlp.down_proj", false},
      {"exclude: other layer kept", excluded, "model.layers.0.mlp.gate_proj", true},
      {"exclude: by component", excluded, "model.layers.0.self_attn.o_proj", false},
      {"exclude: regex", excluded_regex, "model.layers.1.self_attn.q_proj", false},
      {"exclude: regex keeps others", excluded_regex, "model.layers.0.self_attn.q_proj", true},
      {"layers_to_transform: 0 selected", layered, "model.layers.0.self_attn.q_proj", true},
      {"layers_to_transform: 1 not selected", layered, "model.layers.1.self_attn.q_proj", false},
      {"layers_to_transform: 12 selected", layered, "model.layers.12.self_attn.q_proj", true},
      {"layers_to_transform: name without index", layered, "lm_head", false},
      {"layers_pattern: index after 'layers'", layered_pattern, "model.layers.1.self_attn.q_proj", true},
      {"layers_pattern: other index", layered_pattern, "model.layers.0.self_attn.q_proj", false},
      {"layers_pattern: pattern absent", wrong_pattern, "model.layers.1.self_attn.q_proj", false},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, TargetMatching, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<MatchCase>& info) { return std::to_string(info.index); });

TEST(TargetPatterns, RankAndAlphaPatternsFirstMatchWins) {
  const auto config = LoraConfig()
                          .r(8)
                          .lora_alpha(16)
                          .target_modules("all-linear")
                          .rank_pattern({{"layers.0.self_attn.q_proj", 2}, {"q_proj", 4}, {"mlp.*", 6}})
                          .alpha_pattern({{"v_proj", 3.0}});
  const TargetMatcher m(config, kLinearNames);
  auto opts = [&](const std::string& name) { return m.adapter_options_for(name); };
  EXPECT_EQ(opts("model.layers.0.self_attn.q_proj").r(), 2);   // first key wins
  EXPECT_EQ(opts("model.layers.1.self_attn.q_proj").r(), 4);
  EXPECT_EQ(opts("model.layers.0.mlp.up_proj").r(), 6);         // a regex key
  EXPECT_EQ(opts("model.layers.0.self_attn.k_proj").r(), 8);    // no key: the default
  EXPECT_EQ(opts("model.layers.0.self_attn.v_proj").lora_alpha(), 3.0);
  EXPECT_EQ(opts("model.layers.0.self_attn.v_proj").r(), 8);
  EXPECT_EQ(opts("model.layers.0.self_attn.q_proj").lora_alpha(), 16.0);
  // A key must match at a component boundary: "proj" is not "(.*\.)?proj$" of "q_proj".
  const TargetMatcher partial(LoraConfig().target_modules({"q_proj"}).rank_pattern({{"proj", 2}}), kLinearNames);
  EXPECT_EQ(partial.adapter_options_for("model.layers.0.self_attn.q_proj").r(), 8);
}

TEST(TargetPatterns, ModulesToSaveMatchByNameSuffixAsPeftDoes) {
  const TargetMatcher m(LoraConfig().target_modules({"q_proj"}).modules_to_save(std::vector<std::string>{"lm_head", "norm"}));
  EXPECT_TRUE(m.is_module_to_save("lm_head"));
  EXPECT_TRUE(m.is_module_to_save("base.lm_head"));
  EXPECT_FALSE(m.is_module_to_save("lm_head_2"));
  // PEFT's key.endswith(entry): not only at a dot.
  EXPECT_TRUE(m.is_module_to_save("model.norm"));
  EXPECT_TRUE(m.is_module_to_save("model.layers.0.input_layernorm"));
}

}  // namespace
