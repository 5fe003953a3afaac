// Inputs fuzz_recipe (fuzz/, scripts/fuzz.sh) found to escape as something other than a
// ranktune::Error, kept as regression tests.

#include "ranktune/core/error.h"
#include "ranktune/train/config.h"
#include "test_util.h"

#include <gmock/gmock.h>

using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

namespace {

const char* const kRecipe = "model:\n  path: some/model\ndata:\n  train_file: some/train.jsonl\n";

// An adapter key's value passes through JSON, which throws type_error 316 on bytes that are not
// UTF-8; it escaped RunConfig::parse and terminated the process.
TEST(FuzzRegressionTrain, AdapterValueThatIsNotUtf8IsAnErrorNamingTheKey) {
  const std::string recipe = std::string(kRecipe) + "adapter:\n  target_modules: all\xb0linear\n";
  const ranktune::Error e = thrown_error([&] { ranktune::train::RunConfig::parse(recipe, "recipe.yaml"); });
  EXPECT_EQ(e.context().file, "recipe.yaml");
  EXPECT_EQ(e.context().key, "adapter.target_modules");
  EXPECT_THAT(e.message(), HasSubstr("invalid UTF-8"));

  const ranktune::Error o = thrown_error(
      [&] { ranktune::train::RunConfig::parse(kRecipe, "recipe.yaml", {"adapter.target_modules=q\xff"}); });
  EXPECT_EQ(o.context().key, "adapter.target_modules");
  EXPECT_THAT(o.message(), HasSubstr("invalid UTF-8"));
}

}  // namespace
