// train/checkpoint: a checkpoint records the recipe values a resume must not change and names every
// one that differs; a failed write leaves no temporary and keeps the previous checkpoint; stale
// temporaries of a killed run are found and removed; a run directory's files are recognised.

#include "ranktune/core/error.h"
#include "train/checkpoint.h"

#include <gmock/gmock.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace ranktune {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ranktune_checkpoint_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string save(int64_t step, std::vector<std::pair<std::string, std::string>> recipe) {
    train::TrainerState state;
    state.step = step;
    state.total_steps = 10;
    state.recipe = std::move(recipe);
    return train::save_checkpoint(dir_.string(), state, [](const std::string& tmp) {
      std::ofstream(fs::path(tmp) / "adapter_model.safetensors") << "weights";
    });
  }

  fs::path dir_;
};

TEST_F(CheckpointTest, ResumeWithChangedRecipeNamesEveryKeyAndTheCheckpoint) {
  const std::string checkpoint = save(5, {{"adapter.r", "32"}, {"adapter.method", "lora"}, {"train.seed", "42"}});
  EXPECT_NO_THROW(train::check_resume_recipe(checkpoint, {{"adapter.r", "32"}, {"adapter.method", "lora"}, {"train.seed", "42"}}));
  try {
    train::check_resume_recipe(checkpoint, {{"adapter.r", "8"}, {"adapter.method", "dora"}, {"train.seed", "42"}});
    FAIL() << "a changed recipe was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("checkpoint-5"));
    EXPECT_THAT(message, HasSubstr("adapter.r: 8 now, 32 in the checkpoint"));
    EXPECT_THAT(message, HasSubstr("adapter.method: dora now, lora in the checkpoint"));
    EXPECT_THAT(message, Not(HasSubstr("train.seed")));
  }
  // Keys the checkpoint does not record (or a checkpoint from before they were recorded) are not compared.
  EXPECT_NO_THROW(train::check_resume_recipe(checkpoint, {{"adapter.r", "32"}, {"data.limit", "7"}}));
  EXPECT_EQ(train::load_checkpoint_state(checkpoint).recipe.size(), 3u);
}

TEST_F(CheckpointTest, FailedWriteLeavesNoTemporaryAndKeepsThePreviousCheckpoint) {
  save(2, {});
  train::TrainerState state;
  state.step = 4;
  EXPECT_THROW(train::save_checkpoint(dir_.string(), state,
                                      [](const std::string&) { throw Error("write failed: No space left on device"); }),
               Error);
  EXPECT_EQ(train::list_checkpoints(dir_.string()), std::vector<std::string>{(dir_ / "checkpoint-2").string()});
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr("tmp")));
  }
}

TEST_F(CheckpointTest, StaleTemporariesOfAKilledRunAreRemoved) {
  save(2, {});
  fs::create_directories(dir_ / "checkpoint-4.tmp.999999");
  fs::create_directories(dir_ / "notes");
  EXPECT_EQ(train::remove_stale_temporaries(dir_.string()), 1);
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-4.tmp.999999"));
  EXPECT_TRUE(fs::exists(dir_ / "checkpoint-2"));
  EXPECT_TRUE(fs::exists(dir_ / "notes"));
}

TEST_F(CheckpointTest, RunFilesAreRecognisedAndRemovedOnlyThem) {
  EXPECT_TRUE(train::run_files(dir_.string()).empty());
  std::ofstream(dir_ / "notes.txt") << "mine";
  EXPECT_TRUE(train::run_files(dir_.string()).empty());
  save(3, {});
  std::ofstream(dir_ / "summary.json") << "{}";
  // A full fine-tuning run's model directory files are the run's too.
  std::ofstream(dir_ / "config.json") << "{}";
  std::ofstream(dir_ / "tokenizer.json") << "{}";
  EXPECT_EQ(train::run_files(dir_.string()),
            (std::vector<std::string>{"summary.json", "config.json", "tokenizer.json", "checkpoint-3"}));
  train::remove_run_files(dir_.string());
  EXPECT_TRUE(train::run_files(dir_.string()).empty());
  EXPECT_FALSE(fs::exists(dir_ / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir_ / "notes.txt"));
}

}  // namespace
}  // namespace ranktune
