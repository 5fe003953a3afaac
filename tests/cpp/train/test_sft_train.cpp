// A short run per SFT data format (tests/data/sft) on the quickstart's tiny model: the recipe
// reads the format, the template's chat roles render the conversations, and the loss falls.

#include "ranktune/train/config.h"
#include "ranktune/train/trainer.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <filesystem>

using namespace ranktune;

namespace {

namespace fs = std::filesystem;

train::TrainResult short_run(const std::string& file, const std::string& format, const std::string& template_name) {
  const std::string source = RANKTUNE_SOURCE_DIR;
  const fs::path out = fs::temp_directory_path() / ("ranktune_sft_" + format + "_" + template_name);
  fs::remove_all(out);
  const std::string recipe = "model:\n  path: " + source + "/examples/gsm8k/quickstart/model\n" +
                             "data:\n  train_file: " + source + "/tests/data/sft/" + file + "\n  format: " + format +
                             "\n  validation_size: 4\n  max_length: 512\n" + "template: " + template_name + "\n" +
                             R"(adapter:
  r: 16
  lora_alpha: 32
  target_modules: all-linear
  modules_to_save: [model.embed_tokens]
  ensure_weight_tying: true
train:
  max_steps: 12
  batch_size: 8
  lr: 3.0e-3
  warmup_steps: 0
  schedule: constant
  log_every: 3
  threads: 1
eval:
  max_new_tokens: 0
)";
  train::Trainer trainer(train::RunConfig::parse(recipe, "sft.yaml", {"train.output_dir=" + out.string()}));
  trainer.set_progress_bar(false);
  trainer.setup();
  const train::TrainResult result = trainer.train();
  fs::remove_all(out);
  return result;
}

TEST(SftTrainTest, EachFormatTrainsAndItsLossFalls) {
  const std::vector<std::array<std::string, 3>> runs = {
      {"messages.jsonl", "messages", "gsm8k-cot-chatml"},
      {"messages.jsonl", "auto", "gsm8k-cot-llama3"},
      {"prompt_completion.jsonl", "prompt_completion", "gsm8k-cot"},
      {"prompt_completion_chat.jsonl", "auto", "gsm8k-cot-chatml"},
      {"text.jsonl", "text", "gsm8k-cot"},
      {"alpaca.jsonl", "alpaca", "gsm8k-cot"},
  };
  for (const auto& [file, format, template_name] : runs) {
    const train::TrainResult r = short_run(file, format, template_name);
    EXPECT_EQ(r.status, "completed") << file;
    EXPECT_EQ(r.steps, 12) << file;
    EXPECT_LT(r.last_loss, 0.8 * r.first_loss) << file << " with " << template_name << ": " << r.first_loss << " -> " << r.last_loss;
  }
}

}  // namespace
