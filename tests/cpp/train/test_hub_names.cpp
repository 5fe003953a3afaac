// Hub names (`org/name`) wherever a model directory is taken: the recipe's model, its tokenizer and
// its config resolve in the local Hugging Face cache (a fake one, laid out as huggingface_hub does).

#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/trainer.h"
#include "hub_test_util.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <filesystem>

using namespace ranktune;

namespace {

namespace fs = std::filesystem;

TEST(HubNamesTest, ARecipesModelAndTokenizerLoadFromTheCache) {
  const fs::path cache = fs::temp_directory_path() / "ranktune_hub_names";
  fs::remove_all(cache);
  const fs::path repo = cache / "models--acme--quickstart";
  const std::string commit = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";
  const std::string model_dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model/";
  int blob = 0;
  for (const std::string name : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    ranktune::testing::add_cached_file(repo, commit, name, io::read_file(model_dir + name), std::string(40, static_cast<char>('a' + blob++)));
  }
  ranktune::testing::set_cached_ref(repo, "main", commit);
  ranktune::testing::ScopedHubEnv env({{"HF_HUB_CACHE", cache.string()}});

  EXPECT_EQ(model::ModelConfig::load("acme/quickstart").hidden_size, 128);
  const auto from_cache = tokenizer::Tokenizer::from_pretrained("acme/quickstart");
  const auto local = tokenizer::Tokenizer::from_pretrained(model_dir);
  EXPECT_EQ(from_cache.encode("Ivan has 6 jars.", true), local.encode("Ivan has 6 jars.", true));
  train::ModelSection section;
  section.path = "acme/quickstart@" + commit;
  section.dtype = "float32";
  const auto model = train::load_run_model(section);  // no weights: initialised from init_seed
  EXPECT_EQ(model->config().num_hidden_layers, 4);
  fs::remove_all(cache);
}

}  // namespace
