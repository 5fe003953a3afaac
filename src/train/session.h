#pragma once
// A training run set up as torchtune's recipes set one up: one setup_* function per component,
// each deciding once and returning a plain value, gathered in a TrainingSession that every trainer
// of this layer runs on (supervised fine-tuning today; GRPO and data-parallel training reuse the
// setup, the run directory, checkpointing and signal handling). Every input is read and checked
// before the output directory is touched. Internal to the train layer (the optimizer's headers
// are heavy).

#include "checkpoint.h"
#include "optimizer.h"
#include "ranktune/data/batching.h"
#include "ranktune/data/examples.h"
#include "ranktune/data/sft.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/config.h"
#include "ranktune/train/distributed.h"
#include "ranktune/train/trainer.h"

#include <array>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::train {

// ---- setup, one decision each ---------------------------------------------------------------------

// The examples of a run, split once. `validation`: the validation loss (and the questions scored
// during training); `test`: the questions of the final evaluation (eval.file, else the validation
// examples; first eval.limit; empty when eval.max_new_tokens is 0). The SFT formats
// (data.sft_format(), files only) fill the records instead of train and validation; their test
// questions come from eval.file only. Every record is read and checked here, before any model.
struct RunExamples {
  std::vector<data::Example> train, validation, test;
  std::vector<data::SftRecord> train_records, validation_records;
  size_t validation_count() const { return validation.size() + validation_records.size(); }
};
RunExamples setup_examples(const RunConfig& config, const TrainerInputs& inputs);

// model.download: a model.path that is a hub name missing from the local Hugging Face cache is
// downloaded into it, when the model or the tokenizer is to be read from it (not given).
void setup_model_files(const RunConfig& config, const TrainerInputs& inputs);

std::shared_ptr<const tokenizer::Tokenizer> setup_tokenizer(const RunConfig& config, const TrainerInputs& inputs);

// The recipe's template, rendering `format: chat` through the tokenizer's chat template.
std::shared_ptr<const prompt::PromptTemplate> setup_template(const RunConfig& config, const tokenizer::Tokenizer& tokenizer);

// The recipe values a checkpoint records and a resume must match: what shapes the model, the
// adapter, the data and its order, and GRPO's sampling (grpo.*). Inputs given in memory (a
// PeftModel, examples) are not described by the recipe, so their keys are left out.
RecipeValues fixed_recipe_values(const RunConfig& config, const TrainerInputs& inputs);

// The checkpoint a run continues from ("" for a fresh run). A resume is checked against the
// checkpoint's recipe values; a fresh run into a directory holding another run is refused (unless
// train.overwrite_output_dir). Reads only.
std::string setup_run_directory(const TrainSection& train, const RecipeValues& recipe);

// The model given (or the one a given PeftModel wraps), else model.path loaded.
std::shared_ptr<model::CausalLMImpl> setup_model(const RunConfig& config, const TrainerInputs& inputs);

// What trains: a PeftModel's active adapter, or (peft null) every weight of the model.
struct TrainedWeights {
  std::shared_ptr<peft::PeftModel> peft;
  std::string adapter_name = "default";
};
// The adapter a run attaches: adapter.* (nullopt for a given PeftModel, full fine-tuning, or
// adapter.init_from, whose directory is checked here, before any model loads).
std::optional<peft::LoraConfig> setup_adapter_config(const RunConfig& config, const TrainerInputs& inputs);
// The given PeftModel, else the adapter saved in adapter.init_from (trainable), else `adapter` attached (seeded by train.seed), else full fine-tuning.
TrainedWeights setup_adapter(const RunConfig& config, const TrainerInputs& inputs,
                             const std::shared_ptr<model::CausalLMImpl>& model,
                             const std::optional<peft::LoraConfig>& adapter);

// The examples as tokens (GSM8K examples rendered by the template; SFT records rendered through
// its render_chat, which is the model's chat template for format: chat), packed into
// data.max_length rows with data.packing, and the batch order: batches of train.batch_size ×
// `world_size`, the global batches of data-parallel workers (each takes its share of each).
struct TrainingData {
  std::vector<data::TokenizedExample> train, validation;
  data::TokenizeReport train_report;
  std::optional<data::BatchPlan> plan;
  int64_t pad_token_id = 0;
};
TrainingData setup_training_data(const RunConfig& config, const RunExamples& examples,
                                 const tokenizer::Tokenizer& tokenizer, const prompt::PromptTemplate& prompt_template,
                                 int64_t world_size = 1);

// The run's length: optimizer steps in total (train.max_steps, else the epochs) and warmup steps.
struct StepPlan {
  int64_t total_steps = 0;
  int64_t warmup_steps = 0;
};
StepPlan setup_steps(const TrainSection& train, int64_t batches_per_epoch);

// model.device as a device: under data parallelism `cuda` is the worker's LOCAL_RANK GPU. A CUDA
// device without CUDA support is an error naming model.device.
torch::Device setup_device(const ModelSection& model, const Communicator* communicator);

struct TrainingSession;
// Restores the trained weights (into the adapter being trained, or the model), the optimizer
// state and the trainer state (step, data position, RNG) from session.resume_dir. The total comes
// from this recipe: a larger max_steps or epochs extends the run.
void resume_session(TrainingSession& session, const TrainSection& train);

// ---- the session ----------------------------------------------------------------------------------

struct TrainingSession {
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  std::shared_ptr<const prompt::PromptTemplate> prompt_template;
  RunExamples examples;
  std::shared_ptr<model::CausalLMImpl> model;
  torch::Device device = torch::Device(torch::kCPU);  // model.device; batches are moved there
  TrainedWeights weights;
  TrainingData data;
  std::unique_ptr<TrainingOptimizer> optimizer;
  StepPlan steps;
  TrainerState progress;   // step, data position, NaN streak, time so far, recipe values
  std::string resume_dir;  // "" for a fresh run
  // The directory the model was loaded from ("" for a model given in memory without model.path):
  // its config and tokenizer files go beside fully fine-tuned weights.
  std::string model_dir;
};

// Supervised fine-tuning's composition: every setup_* in order, then the resume. Another trainer
// (GRPO: prompts instead of tokenized pairs) composes its own session from the same functions.
TrainingSession setup_session(const RunConfig& config, const TrainerInputs& inputs);

// ---- the run directory -------------------------------------------------------------------------------

// Before the first step: replaces another run's files (train.overwrite_output_dir), removes stale
// checkpoint temporaries, creates the directory and writes config.yaml.
void open_run_directory(const RunConfig& config, const TrainingSession& session);

// The trained weights written to `dir`: the adapter in PEFT format, or for full fine-tuning
// model.safetensors with the loaded directory's config and tokenizer files (a model directory).
void save_trained_weights(const TrainingSession& session, const std::string& dir);

// io::resolve_pretrained(model.path) when it holds a config.json, else "" (also when it cannot be resolved).
std::string loaded_model_directory(const ModelSection& model);

// A checkpoint of the session at its current step; on failure (disk full, permission) a warning
// names the file and the cause, the temporaries are gone and the previous checkpoint stays.
// Returns whether it was written.
bool save_session_checkpoint(const TrainingSession& session, const TrainSection& train);

// ---- signals -------------------------------------------------------------------------------------------

// SIGINT (Ctrl-C), SIGTERM and SIGHUP (timeout, docker stop, batch schedulers, a closed terminal)
// only record the signal while a StopSignals lives; the loop saves a checkpoint at the next step
// boundary. The previous handlers come back when it ends.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal received since construction, or 0.
  int received() const;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<void (*)(int), 3> previous_{};
};

}  // namespace ranktune::train
