#pragma once
// Training checkpoints: everything a run needs to continue exactly where it stopped.
//
//   <output_dir>/checkpoint-<step>/
//     adapter_config.json, adapter_model.safetensors   the adapter in PEFT format (or model.safetensors
//                                                      for full fine-tuning)
//     optimizer.pt                                     AdamW moments and step counts
//     rng_state.safetensors                            the global CPU generator (dropout, sampling)
//     trainer_state.json                               step, data position, scheduler, NaN streak,
//                                                      training seconds so far, and the recipe
//                                                      values a resume must not change
//
// A checkpoint is written under checkpoint-<step>.tmp and renamed when complete, so a crash never
// leaves a half-written checkpoint under a real name.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::train {

// Recipe values, key -> YAML text (RunConfig::key_values()).
using RecipeValues = std::vector<std::pair<std::string, std::string>>;

struct TrainerState {
  int64_t step = 0;        // optimizer steps done
  int64_t micro_step = 0;  // micro-batches consumed (the data position)
  int64_t nan_streak = 0;
  int64_t total_steps = 0;
  uint64_t seed = 0;
  double seconds = 0;  // training time of the whole run up to this step (all segments)
  int64_t world_size = 1;  // data-parallel workers (micro_step counts their global batches)
  // The recipe values that must not change on resume (key -> YAML text); see check_resume_recipe.
  RecipeValues recipe;
};

// Writes a checkpoint: `write_contents(dir)` writes the model/adapter and optimizer files into the
// temporary directory; the RNG state and trainer state are added here. Returns the final path.
std::string save_checkpoint(const std::string& output_dir, const TrainerState& state,
                            const std::function<void(const std::string& dir)>& write_contents);

// Reads trainer_state.json and restores the global RNG from a checkpoint directory.
TrainerState load_checkpoint_state(const std::string& dir);

// Compares the recipe values recorded in a checkpoint with `current` (key -> YAML text; only keys
// present in both are compared, so a checkpoint written before they were recorded checks nothing).
// Throws one error naming the checkpoint and every key that differs, with both values.
void check_resume_recipe(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& current);

// The files of a run in `output_dir` (adapter or model weights, checkpoints, metrics, summary):
// their names, empty when it holds no run.
std::vector<std::string> run_files(const std::string& output_dir);

// Deletes the files run_files() lists, and stale temporaries.
void remove_run_files(const std::string& output_dir);

// Deletes `checkpoint-*.tmp.*` directories left by a killed run. Returns how many.
int64_t remove_stale_temporaries(const std::string& output_dir);

// The checkpoint directories in `output_dir`, oldest first.
std::vector<std::string> list_checkpoints(const std::string& output_dir);

// Resolves train.resume_from: a checkpoint directory, or "latest" (the newest in output_dir;
// none is an error).
std::string resolve_resume_path(const std::string& resume_from, const std::string& output_dir);

// Deletes all but the newest `keep` checkpoints (keep <= 0 keeps all).
void prune_checkpoints(const std::string& output_dir, int64_t keep);

}  // namespace ranktune::train
