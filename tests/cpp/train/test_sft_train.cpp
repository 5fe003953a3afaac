// A short run per SFT data format (tests/data/sft) on the quickstart's tiny model: the recipe
// reads the format, the template's chat roles render the conversations, and the loss falls.

#include "ranktune/prompt/template.h"
#include "ranktune/train/config.h"
#include "ranktune/train/trainer.h"
#include "test_util.h"
#include "train/session.h"

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

// Labels the loss counts: every label but each example's first (logits[:-1] against labels[1:]
// unpacked; packing masks each example's first label, which no earlier token of it predicts).
int64_t counted_labels(const std::vector<data::TokenizedExample>& rows) {
  int64_t n = 0;
  for (const auto& row : rows) {
    for (size_t i = 1; i < row.labels.size(); ++i) n += row.labels[i] != -100;
  }
  return n;
}

TEST(SftTrainTest, ValidationExamplesArePackedLikeTheTrainingOnes) {
  const std::string source = RANKTUNE_SOURCE_DIR;
  const std::string recipe = "model: {path: " + source + "/examples/gsm8k/quickstart/model}\n" +
                             "data: {train_file: " + source + "/tests/data/sft/text.jsonl, format: text, " +
                             "validation_size: 10, max_length: 256}\ntemplate: gsm8k-cot\n";
  std::vector<train::TrainingData> runs;
  for (const char* packing : {"data.packing=false", "data.packing=true"}) {
    const train::RunConfig config = train::RunConfig::parse(recipe, "pack.yaml", {packing});
    const train::RunExamples examples = train::setup_examples(config, {});
    const auto tok = train::setup_tokenizer(config, {});
    runs.push_back(train::setup_training_data(config, examples, *tok, prompt::PromptTemplate::load(config.template_name)));
  }
  const auto& plain = runs[0].validation;
  const auto& packed = runs[1].validation;
  ASSERT_EQ(plain.size(), 10u);
  EXPECT_LT(packed.size(), plain.size());
  int64_t examples_in_rows = 0;
  for (const auto& row : packed) {
    EXPECT_LE(static_cast<int64_t>(row.input_ids.size()), 256);
    examples_in_rows += row.packed_lengths.empty() ? 1 : static_cast<int64_t>(row.packed_lengths.size());
  }
  EXPECT_EQ(examples_in_rows, 10);
  EXPECT_EQ(counted_labels(packed), counted_labels(plain));
  EXPECT_LT(runs[1].train.size(), runs[0].train.size());
}

}  // namespace
