// Limits before allocation: config.json sizes are checked as they are read (bounds), against the
// checkpoint's tensor headers (load_causal_lm) and against the machine's memory (create_causal_lm),
// each before any parameter is allocated, with errors naming the file, the key and both values.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/model/generation.h"
#include "model/size_limits.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <functional>

using namespace ranktune;
using ranktune::testing::AllocationTracker;
using ranktune::testing::error_of;
using ranktune::testing::shared_dir;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return shared_dir() + "/fixtures/hf-tiny/" + name; }

// A model directory: the fixture's weights with its config.json changed by `edit`.
class EditedModelDir {
 public:
  EditedModelDir(const std::string& name, const std::function<void(nlohmann::json&)>& edit)
      : dir_(fs::temp_directory_path() / ("ranktune_limits_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    nlohmann::json config = nlohmann::json::parse(io::read_file(fixture(name) + "/config.json"));
    edit(config);
    io::write_file_atomic((dir_ / "config.json").string(), config.dump());
    fs::create_symlink(fixture(name) + "/model.safetensors", dir_ / "model.safetensors");
  }
  ~EditedModelDir() { fs::remove_all(dir_); }
  std::string path() const { return dir_.string(); }
  std::string config_file() const { return (dir_ / "config.json").string(); }

 private:
  fs::path dir_;
};

// The error load_causal_lm gives for the fixture `name` with one config.json key set to `value`;
// checks that nothing was allocated on the way.
std::string load_error(const std::string& name, const std::string& key, int64_t value) {
  const EditedModelDir dir(name, [&](nlohmann::json& c) { c[key] = value; });
  AllocationTracker allocations;
  const std::string message = error_of([&] { model::load_causal_lm(dir.path()); });
  EXPECT_LT(allocations.peak_bytes(), 1 << 16) << "allocated before the sizes were checked";
  EXPECT_THAT(message, HasSubstr(dir.config_file()));
  return message;
}

}  // namespace

TEST(ModelSizeLimitsTest, HugeSizesFailAsTheyAreReadNamingTheFileKeyValueAndLimit) {
  auto message = error_of([&] {
    model::ModelConfig::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
      "num_attention_heads": 8, "num_hidden_layers": 2, "vocab_size": 1099511627776})", "m/config.json");
  });
  EXPECT_THAT(message, HasSubstr("m/config.json: 'vocab_size': is 1099511627776, more than ranktune's limit of 16777216"));
  message = error_of([&] {
    model::ModelConfig::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
      "num_attention_heads": 8, "num_hidden_layers": 1000000000, "vocab_size": 256})", "m/config.json");
  });
  EXPECT_THAT(message, HasSubstr("m/config.json: 'num_hidden_layers': is 1000000000, more than ranktune's limit of 4096"));
  message = error_of([&] {
    model::ModelConfig::from_json(R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_head": 4, "n_layer": 2,
      "vocab_size": 256, "n_positions": 1000000000000})", "g/config.json");
  });
  EXPECT_THAT(message, HasSubstr("g/config.json: 'n_positions': is 1000000000000, more than ranktune's limit of 67108864"));
}

TEST(ModelSizeLimitsTest, SizesThatDisagreeWithTheWeightsFailBeforeAllocating) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/gpt2/model.safetensors");
  EXPECT_THAT(load_error("llama", "vocab_size", 1000000),
              HasSubstr("'vocab_size': is 1000000 but the checkpoint's model.embed_tokens.weight has shape [256, 64]"));
  EXPECT_THAT(load_error("llama", "hidden_size", 4096), HasSubstr("'hidden_size': is 4096 but the checkpoint's"));
  EXPECT_THAT(load_error("llama", "num_hidden_layers", 4000),
              HasSubstr("'num_hidden_layers': is 4000 but the checkpoint"));
  EXPECT_THAT(load_error("llama", "num_hidden_layers", 4000), HasSubstr("holds 2 layers"));
  EXPECT_THAT(load_error("llama", "intermediate_size", 500000),
              HasSubstr("'intermediate_size': is 500000 but the checkpoint's model.layers.0.mlp.gate_proj.weight"));
  EXPECT_THAT(load_error("llama", "num_key_value_heads", 8), HasSubstr("'num_key_value_heads': is 8 with head_dim 8"));
  EXPECT_THAT(load_error("llama", "head_dim", 4096), HasSubstr("'num_attention_heads': is 8 with head_dim 4096"));
  EXPECT_THAT(load_error("gpt2", "n_positions", 60000000), HasSubstr("'n_positions': is 60000000 but the checkpoint's transformer.wpe.weight"));
  EXPECT_THAT(load_error("gpt2", "n_layer", 3000), HasSubstr("'n_layer': is 3000 but the checkpoint"));
}

TEST(ModelSizeLimitsTest, AModelLargerThanMemoryIsRefusedBeforeAllocating) {
  model::ModelConfig config = model::ModelConfig::from_json(
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 262144, "intermediate_size": 1048576,
          "num_attention_heads": 16384, "num_hidden_layers": 4096, "vocab_size": 16777216})", "big/config.json");
  EXPECT_GT(model::parameter_count(config), 1e15);
  AllocationTracker allocations;
  const std::string message = error_of([&] { model::create_causal_lm(config); });
  EXPECT_EQ(allocations.peak_bytes(), 0);
  EXPECT_THAT(message, HasSubstr("GiB for its parameters in Float, more than this machine's"));
  EXPECT_THAT(message, HasSubstr("vocab_size 16777216, hidden_size 262144"));
}

// A quantized base is counted as it is stored: a Llama-2-7B shape needs ~27 GB in fp32 and
// ~4.7 GB with nf4 projections, so `model.quantize` is what lets it past the memory check.
TEST(ModelSizeLimitsTest, AQuantizedBaseIsCountedAsItIsStored) {
  const model::ModelConfig config = model::ModelConfig::from_json(
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 11008,
          "num_attention_heads": 32, "num_hidden_layers": 32, "vocab_size": 32000})", "llama-7b/config.json");
  const double total = model::parameter_count(config), dense = model::dense_parameter_count(config);
  EXPECT_NEAR(total, 6.74e9, 0.02e9);
  EXPECT_DOUBLE_EQ(dense, 2.0 * 32000 * 4096);  // embeddings and the untied head
  EXPECT_DOUBLE_EQ(model::parameter_bytes(config, torch::kFloat), 4 * total);
  EXPECT_DOUBLE_EQ(model::parameter_bytes(config, torch::kFloat, QuantFormat::int8), 4 * dense + 1.0625 * (total - dense));
  EXPECT_DOUBLE_EQ(model::parameter_bytes(config, torch::kFloat, QuantFormat::nf4), 4 * dense + 0.5625 * (total - dense));
  EXPECT_LT(model::parameter_bytes(config, torch::kFloat, QuantFormat::nf4, /*double_quant=*/true),
            model::parameter_bytes(config, torch::kFloat, QuantFormat::nf4));
  // The embeddings and head stay in the compute dtype.
  EXPECT_DOUBLE_EQ(model::parameter_bytes(config, torch::kBFloat16, QuantFormat::int8), 2 * dense + 1.0625 * (total - dense));
  // Too large even quantized: the message says how it was counted.
  model::ModelConfig huge = config;
  huge.num_hidden_layers = 1000000;
  const std::string message = error_of([&] {
    model::check_parameters_fit_memory(huge, torch::kFloat, QuantFormat::nf4, true, "huge/config.json");
  });
  EXPECT_THAT(message, HasSubstr("huge/config.json"));
  EXPECT_THAT(message, HasSubstr("for its parameters in Float (projections nf4 with double quantisation), more than"));
}

TEST(ModelSizeLimitsTest, ParameterCountMatchesTheModelsBuilt) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/gpt2/config.json");
  for (const std::string name : {"llama", "gpt2", "qwen2", "mistral"}) {
    const auto config = model::ModelConfig::load(fixture(name));
    auto built = model::create_causal_lm(config);
    double count = 0;
    for (const auto& p : built->parameters()) count += static_cast<double>(p.numel());
    // An upper estimate (biases counted whether present or not), within 5% on these tiny models.
    EXPECT_GE(model::parameter_count(config), count) << name;
    EXPECT_LE(model::parameter_count(config), count * 1.05) << name;
  }
}

TEST(ModelSizeLimitsTest, TokenIdsOutsideTheVocabularyAreNamedWithTheSize) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/gpt2/model.safetensors");
  for (const std::string name : {"llama", "gpt2"}) {
    auto model = model::load_causal_lm(fixture(name));
    const int64_t vocab = model->config().vocab_size;
    const auto ids = at::tensor(std::vector<int64_t>{1, 2, 3, vocab, 5}, at::TensorOptions().dtype(torch::kLong)).view({1, 5});
    EXPECT_THAT(error_of([&] { model->forward(ids); }),
                HasSubstr(c10::str("token id ", vocab, " (input_ids[0, 3]) is outside the vocabulary: vocab_size is ",
                                   vocab, ", so ids are 0 to ", vocab - 1)))
        << name;
    const auto negative = at::tensor(std::vector<int64_t>{1, -1}, at::TensorOptions().dtype(torch::kLong)).view({1, 2});
    EXPECT_THAT(error_of([&] { model->forward(negative); }), HasSubstr("token id -1 (input_ids[0, 1])")) << name;
    EXPECT_THAT(error_of([&] { model::generate(*model, {{1, 2}, {3, vocab + 7}}, model::GenerationOptions()); }),
                HasSubstr(c10::str("token id ", vocab + 7, " (prompt 1, position 1) is outside the vocabulary")))
        << name;
    // Ids inside the vocabulary still work, up to the last one.
    EXPECT_NO_THROW(model->forward(at::tensor(std::vector<int64_t>{0, vocab - 1}, at::TensorOptions().dtype(torch::kLong)).view({1, 2})));
  }
}
