// model.quantize and model.double_quant: recipe values, bad values, and the model a run loads.

#include "ranktune/core/error.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/train/config.h"
#include "ranktune/train/trainer.h"
#include "test_util.h"

#include <gmock/gmock.h>

using namespace ranktune;
using ::testing::HasSubstr;
using ranktune::testing::error_of;

namespace {

train::RunConfig parse(const std::string& model_keys, const std::vector<std::string>& overrides = {}) {
  return train::RunConfig::parse("model:\n  path: some/model\n" + model_keys + "data:\n  train_file: t.jsonl\n",
                                 "recipe.yaml", overrides);
}

TEST(QuantizeRecipeTest, ValuesAndDefaults) {
  EXPECT_EQ(parse("").model.quantize, "none");
  EXPECT_FALSE(parse("").model.double_quant);
  const auto c = parse("  quantize: nf4\n  double_quant: true\n");
  EXPECT_EQ(c.model.quantize, "nf4");
  EXPECT_TRUE(c.model.double_quant);
  EXPECT_EQ(parse("", {"model.quantize=int8"}).model.quantize, "int8");
}

TEST(QuantizeRecipeTest, BadValueNamesTheKeyAndTheAllowedValues) {
  const std::string message = error_of([] { parse("  quantize: int4\n"); });
  EXPECT_THAT(message, HasSubstr("model.quantize"));
  EXPECT_THAT(message, HasSubstr("'int4'"));
  EXPECT_THAT(message, HasSubstr("none, int8, nf4"));
  EXPECT_THAT(error_of([] { parse("", {"model.quantize=fp8"}); }), HasSubstr("model.quantize"));
}

TEST(QuantizeRecipeTest, FullFineTuningOfAQuantizedBaseIsRefused) {
  // The quantized weights are frozen: "full" would silently train only embeddings and norms.
  const std::string message = error_of([] { parse("  quantize: nf4\n", {"adapter.method=full"}); });
  EXPECT_THAT(message, HasSubstr("model.quantize"));
  EXPECT_THAT(message, HasSubstr("adapter.method: full"));
  EXPECT_EQ(parse("", {"adapter.method=full"}).model.quantize, "none");
}

TEST(QuantizeRecipeTest, TheRunModelIsQuantizedAsTheRecipeSays) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  train::ModelSection section;
  section.path = ranktune::testing::shared_dir() + "/fixtures/hf-tiny/llama";
  section.dtype = "float32";
  section.quantize = "nf4";
  section.double_quant = true;
  auto model = train::load_run_model(section);
  int quantized = 0;
  for (const auto& [name, linear] : peft::find_linears(*model)) {
    quantized += linear->quantized();
    if (linear->quantized()) EXPECT_TRUE(linear->quantized_weight().double_quant()) << name;
  }
  EXPECT_EQ(quantized, 2 * 7);  // 2 layers x q, k, v, o, gate, up, down
  section.quantize = "int8";
  const Error e = ranktune::testing::thrown_error([&] { train::load_run_model(section); });
  EXPECT_EQ(e.context().key, "model.double_quant");
}

}  // namespace
