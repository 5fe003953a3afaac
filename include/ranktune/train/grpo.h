#pragma once
// GRPO (Group Relative Policy Optimization; Shao et al. 2024, DeepSeekMath; the RL stage of
// DeepSeek-R1) on LoRA/DoRA adapters, with TRL's GRPOTrainer semantics and names (docs/grpo.md):
// per step, G completions are sampled for each prompt, scored by reward functions (the answer's
// accuracy, the template's format, a length penalty, or the caller's own), turned into advantages
// relative to their group, and the clipped surrogate loss (+ β·KL to the reference: the same model
// with its adapter disabled) is minimised for `grpo.num_iterations` optimizer steps.
//
//   auto config = ranktune::train::RunConfig::load("examples/grpo/quickstart.yaml");
//   ranktune::train::TrainerInputs inputs;
//   inputs.evaluator = ranktune::eval::make_gsm8k_evaluator(config.eval.options);
//   ranktune::train::GrpoTrainer trainer(config, std::move(inputs));
//   trainer.setup();
//   auto result = trainer.train();
//
// Files in train.output_dir: the adapter (PEFT format), checkpoint-<step>/ (exact resume: the
// sampler is seeded per step from train.seed), metrics.jsonl, training-curve.svg (reward, length,
// loss), predictions.jsonl (final evaluation), summary.json, config.yaml.

#include "ranktune/data/examples.h"
#include "ranktune/train/config.h"
#include "ranktune/train/trainer.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::prompt {
class PromptTemplate;
}

namespace ranktune::train {

// What a reward function scores: one entry per completion, the G completions of a prompt next to
// each other.
struct RewardBatch {
  std::vector<std::string> prompts;            // the rendered prompt
  std::vector<std::string> completions;        // decoded, cut at the template's stop strings
  std::vector<const data::Example*> examples;  // the question and gold answer it answers
  std::vector<int64_t> completion_lengths;     // in tokens
  int64_t max_completion_length = 0;
};

// One score per completion; nullopt: not applicable (left out of the weighted sum, as TRL's None).
using RewardScores = std::vector<std::optional<double>>;

struct RewardFunction {
  std::string name;  // its metrics key: rewards/<name>
  std::function<RewardScores(const RewardBatch&)> score;
};

// The built-in rewards grpo.reward_funcs names: accuracy, accuracy_flexible, format, length.
const std::vector<std::string>& builtin_reward_names();
// A built-in reward scoring with `prompt_template`'s answer and format patterns. Throws naming
// grpo.reward_funcs for an unknown name.
RewardFunction builtin_reward(const std::string& name, std::shared_ptr<const prompt::PromptTemplate> prompt_template);

struct GrpoResult : TrainResult {
  // The mean reward of the first and the last logged step of the whole run (across resumes).
  double first_reward = 0;
  double last_reward = 0;
};

class GrpoTrainer {
 public:
  // `rewards`: custom reward functions, scored after grpo.reward_funcs' built-in ones (and weighted
  // by the grpo.reward_weights after theirs).
  GrpoTrainer(RunConfig config, TrainerInputs inputs = {}, std::vector<RewardFunction> rewards = {});
  ~GrpoTrainer();

  // As Trainer::setup(): every input read and checked (and a checkpoint restored) before anything
  // is written; the training examples are the prompts (question + gold answer).
  void setup();
  // Runs to train.max_steps (or the epochs), then saves the adapter, evaluates and writes the
  // summary; a signal or request_stop() ends it with a checkpoint after the current batch of rollouts.
  GrpoResult train();

  void add_callback(std::function<void(const MetricsRow&)> callback);
  void request_stop();
  void set_progress_bar(bool enabled);

  const RunConfig& config() const;
  std::shared_ptr<model::CausalLMImpl> model() const;
  std::shared_ptr<peft::PeftModel> peft_model() const;
  const tokenizer::Tokenizer& tokenizer() const;  // after setup()
  int64_t total_steps() const;

 private:
  struct State;
  class Loop;
  std::unique_ptr<State> state_;
};

}  // namespace ranktune::train
