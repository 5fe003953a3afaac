#pragma once
// The settings of a training or evaluation run — what a YAML recipe (examples/gsm8k/*.yaml) holds.
// The keys, their types, defaults, allowed values and help live in one table (config.cpp), which
// validates files, applies dotted overrides (train.lr=1e-4) and writes docs/config.md.
//
//   auto config = ranktune::train::RunConfig::load("examples/gsm8k/lora.yaml", {"train.lr=1e-4"});

#include "ranktune/peft/lora_config.h"
#include "ranktune/prompt/reward.h"
#include "ranktune/train/schedule.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::train {

struct ModelSection {
  std::string path;       // Hugging Face model directory
  std::string dtype;      // float32 | bfloat16
  int64_t init_seed = 0;  // used when the directory has a config but no weights (random init)
  bool download = false;  // fetch an org/name path from the hub when it is not in the local cache
  std::string quantize;   // none | int8 | nf4: how the frozen projection weights are stored
  bool double_quant = false;  // nf4: quantize the block scales too
  std::string device;         // cpu | cuda | cuda:N (data parallel: cuda means the worker's LOCAL_RANK GPU)
};

// data.format: GSM8K records (gsm8k: the answer field holds the rationale and "#### N"; jsonl:
// separate rationale and answer fields), one of data/sft.h's formats, or `auto` (detect: one of
// those four, told by the first record's fields).
enum class DataFormat { gsm8k, jsonl, messages, prompt_completion, text, alpaca, detect };
// The recipe's name of a format ("auto" for detect).
std::string to_string(DataFormat format);

struct DataSection {
  std::string train_file;
  std::string eval_file;  // optional: validation examples; else held out from train_file
  DataFormat format = DataFormat::gsm8k;
  // True for the SFT formats (data/sft.h: messages, prompt_completion, text, alpaca, auto).
  bool sft_format() const { return format != DataFormat::gsm8k && format != DataFormat::jsonl; }
  std::string question_field, rationale_field, answer_field;
  // The other formats' fields (data/sft.h) and which tokens carry labels.
  std::string messages_field, prompt_field, completion_field, text_field, instruction_field, input_field, output_field;
  bool assistant_only_loss = true;
  bool completion_only_loss = true;
  bool strip_calculator = false;
  int64_t validation_size = 0;
  int64_t max_length = 0;
  std::string overlong;  // skip | truncate
  int64_t limit = 0;     // use only the first N training examples (0: all)
  bool group_by_length = true;
  bool packing = false;  // training examples packed into sequences of max_length (data/batching.h)
};

// adapter.method. `dora` exists only while a recipe is read: RunConfig::parse turns it into lora
// with lora.use_dora, so a loaded RunConfig holds lora or full.
enum class AdapterMethod { lora, dora, full };

struct AdapterSection {
  AdapterMethod method = AdapterMethod::lora;
  bool full() const { return method == AdapterMethod::full; }
  peft::LoraConfig lora;  // adapter.<field>: r, lora_alpha, target_modules, use_dora, ...
  // A saved adapter (PEFT format) to start from and keep training, instead of a fresh one: its own
  // adapter_config.json decides the adapter (e.g. the SFT adapter a GRPO run starts from).
  std::string init_from;

  // "full", "dora" or "lora": what trains, for summaries and plots.
  std::string training_method() const;
};

// train.precision: fp32, bf16 (the forward pass under CPU autocast), or auto (bf16 when a GEMM
// probe at start-up finds bf16 measurably faster on this machine, else fp32; train/precision.h).
enum class Precision { fp32, bf16, automatic };

struct TrainSection {
  std::string output_dir;
  uint64_t seed = 0;
  int64_t epochs = 1;
  int64_t max_steps = 0;
  int64_t batch_size = 1;
  int64_t gradient_accumulation_steps = 1;
  double lr = 0;
  double lora_plus_ratio = 0;
  double weight_decay = 0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  Schedule schedule = Schedule::cosine;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0;
  double max_grad_norm = 0;
  Precision precision = Precision::fp32;
  bool gradient_checkpointing = false;
  int64_t log_every = 1;
  int64_t eval_every = 0;
  int64_t save_every = 0;
  int64_t keep_last = 0;
  std::string resume_from;  // a checkpoint directory, or "latest"
  bool overwrite_output_dir = false;  // a fresh run may replace another run in output_dir
  int64_t max_nan_steps = 0;
  int64_t threads = 0;
  double distributed_timeout = 600;  // seconds a data-parallel worker waits for the others
};

// How the questions of an evaluation are answered and scored (eval.*): the GSM8K evaluator's
// options (eval/gsm8k_eval.h), kept with the recipe that sets them.
struct EvalOptions {
  int64_t batch_size = 8;
  int64_t max_new_tokens = 256;
  // transformers' repetition_penalty for every completion (1: off); see GenerationOptions.
  double repetition_penalty = 1.0;
  // transformers' no_repeat_ngram_size (0: off); see GenerationOptions.
  int64_t no_repeat_ngram_size = 0;
  // The main completion of each question (accuracy, format rate, predictions.jsonl): greedy, or
  // sampled with temperature/top_p/top_k below (seeded).
  bool greedy = true;
  // Extra sampled completions per question for maj@k and pass@k (0: none).
  int64_t samples = 0;
  double temperature = 0.7;
  double top_p = 0.95;
  int64_t top_k = 0;
  // pass@k for these k (each ≤ samples).
  std::vector<int64_t> pass_at_k;
  bool calculator = false;
  uint64_t seed = 0;
  bool progress = true;  // a progress bar on stderr
};

struct EvalSection {
  std::string file;             // GSM8K-format test questions
  std::string adapter;          // for `ranktune eval`: adapter directory (default: train.output_dir)
  int64_t limit = 0;            // first N questions (0: all)
  int64_t during_training = 0;  // questions scored at each train.eval_every (0: loss only)
  std::string output_dir;       // where `ranktune eval` writes (default: train.output_dir)
  EvalOptions options;          // batch size, generation length, sampling, pass@k, calculator
};

// sample.keep: which of a question's samples `ranktune sample` keeps (eval/rejection_sampling.h).
enum class SampleKeep { all_correct, best_of_k, first_correct };

// How `ranktune sample` draws, scores and keeps completions (sample.*).
struct SampleOptions {
  int64_t num_samples = 4;  // K completions per question
  SampleKeep keep = SampleKeep::all_correct;
  prompt::AnswerMode answer = prompt::AnswerMode::strict;  // what counts as correct
  double format_weight = 0.5;  // reward = accuracy + format_weight × format (best_of_k ranks by it)
  int64_t batch_size = 8;
  int64_t max_new_tokens = 256;
  double temperature = 0.7;
  double top_p = 0.95;
  int64_t top_k = 0;
  double repetition_penalty = 1.0;
  bool calculator = false;  // the GSM8K calculator (a template's own tools: section is always used)
  uint64_t seed = 0;
  bool progress = true;  // a progress bar on stderr
};

struct SampleSection {
  std::string file;           // GSM8K-format questions (default: data.train_file)
  int64_t limit = 0;          // first N questions (0: all)
  std::string model;          // the model sampled from (default: model.path), e.g. a larger teacher
  std::string adapter;        // its adapter directory ("" or "none": the model alone)
  std::string template_name;  // the template prompts are rendered with (default: template)
  std::string output;         // the JSONL of kept samples
  SampleOptions options;
};

// grpo.*: what `ranktune grpo` (train/grpo.h) does per step, with TRL's GRPOConfig names.
struct GrpoSection {
  int64_t num_generations = 8;         // G completions per prompt
  int64_t max_completion_length = 256;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  double repetition_penalty = 1.0;
  std::string loss_type = "dapo";      // grpo | bnpo | dr_grpo | dapo
  double epsilon = 0.2;
  double epsilon_high = 0.2;
  double beta = 0.0;                   // KL to the reference (the model with adapters disabled)
  int64_t num_iterations = 1;          // μ: optimizer steps per batch of rollouts
  std::string scale_rewards = "group";  // group | batch | none
  bool mask_truncated_completions = false;
  bool skip_zero_std_groups = false;
  std::vector<std::string> reward_funcs;  // built-in names (train/grpo.h)
  std::vector<double> reward_weights;     // one per reward function (custom ones after the built-in); empty: 1 each
  bool calculator = false;             // the GSM8K calculator inserts results while sampling
  int64_t logprob_chunk = 256;         // completion tokens per chunk of the log-prob head
};

struct RunConfig {
  std::string source;    // the YAML file
  ModelSection model;
  DataSection data;
  std::string template_name;
  AdapterSection adapter;
  TrainSection train;
  EvalSection eval;
  SampleSection sample;
  GrpoSection grpo;

  // Reads a YAML recipe and applies `key.path=value` overrides. Every key is checked: an unknown
  // or misspelt key is an error naming the file, the line and the key and suggesting the nearest
  // valid one; a wrong type or value names the key and what is allowed. Relative paths in the file
  // are resolved against the file's directory.
  static RunConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  static RunConfig parse(const std::string& yaml_text, const std::string& source,
                         const std::vector<std::string>& overrides = {});
  // The adapter a run attaches to a model without one: adapter.* with task_type CAUSAL_LM and
  // base_model_name_or_path model.path. Throws naming adapter.target_modules when it is not set
  // (recipes have no per-model default), and for adapter.method full.
  peft::LoraConfig adapter_config() const;
  // The effective configuration as YAML (all keys, defaults filled in; with adapter.method full,
  // no adapter fields), for run directories.
  std::string to_yaml() const;
  // Every key with its value as YAML flow text (`8`, `[q_proj, v_proj]`), in table order; the
  // same keys as to_yaml(). Resume compares the ones a checkpoint records.
  std::vector<std::pair<std::string, std::string>> key_values() const;
  // Markdown documenting every key (docs/config.md is this text).
  static std::string documentation();
};

}  // namespace ranktune::train
