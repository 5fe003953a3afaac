#pragma once
// Rejection sampling (DeepSeek-R1's rejection-sampling SFT, and distillation of a larger model's
// traces into a small one): K completions per question are sampled, scored with the rule-based
// rewards (prompt/reward.h), and the kept ones are written as training data `ranktune train`
// reads with data.format: prompt_completion — the prompt exactly as the model saw it and the
// completion exactly as it wrote it, so training learns the sampled trace and nothing else.
//
//   auto summary = eval::rejection_sample(*model, tok, tmpl, questions, options, "samples.jsonl");

#include "ranktune/data/examples.h"
#include "ranktune/train/config.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ranktune::model {
class CausalLMImpl;
}
namespace ranktune::prompt {
class PromptTemplate;
class ToolRegistry;
}  // namespace ranktune::prompt
namespace ranktune::tokenizer {
class Tokenizer;
}

namespace ranktune::eval {

// The options (sample.* in a recipe) live with the recipe.
using train::SampleKeep;
using train::SampleOptions;

// One completion with its score.
struct ScoredSample {
  std::string completion;  // cut at the template's stop strings
  double reward = 0;       // accuracy + format_weight × format
  bool correct = false;    // the accuracy reward is 1
};

// Scores a completion of an example's question.
using SampleScorer = std::function<ScoredSample(const std::string& completion, const data::Example& example)>;

// The rewards of prompt/reward.h: accuracy (strict or flexible) + format_weight × format.
SampleScorer reward_scorer(const prompt::PromptTemplate& tmpl, prompt::AnswerMode answer, double format_weight);

// Which of one question's samples (in sampling order) are kept, as indices in ascending order:
//   all_correct    every correct sample whose completion differs from every earlier kept one
//   best_of_k      the correct sample with the highest reward (ties: the earliest)
//   first_correct  the earliest correct sample
// A wrong sample is never kept.
std::vector<size_t> select_samples(const std::vector<ScoredSample>& samples, SampleKeep keep);

struct SampleSummary {
  int64_t questions = 0;
  int64_t samples_per_question = 0;
  int64_t samples = 0;
  int64_t correct = 0;
  int64_t kept = 0;             // records written
  int64_t questions_kept = 0;   // questions with at least one record
  double pass_at_1 = 0;         // mean fraction of correct samples per question
  double pass_at_k = 0;         // questions with at least one correct sample (k = samples_per_question)
  int64_t generated_tokens = 0;
  double seconds = 0;
  // {"questions": …, "samples_per_question": …, …, "pass_at_1": …, "pass_at_4": …, …}
  std::string to_json() const;
};

// Samples options.num_samples completions per question (batched, KV cache, seeded), scores each
// with `scorer` (null: reward_scorer(tmpl, options.answer, options.format_weight)), keeps them per
// options.keep, and writes `output_path` atomically: one JSON line per kept sample,
//   {"prompt", "completion", "question", "gold", "reward", "sample"}
// (the completion ends with the template's end-of-turn marker for chat formats; a plain template's
// EOS is added by the trainer). `tools`: what the template's tool calls reach (null: the built-ins).
SampleSummary rejection_sample(model::CausalLMImpl& model, const tokenizer::Tokenizer& tokenizer,
                               const prompt::PromptTemplate& prompt_template, const std::vector<data::Example>& examples,
                               const SampleOptions& options, const std::string& output_path,
                               const SampleScorer& scorer = nullptr,
                               std::shared_ptr<const prompt::ToolRegistry> tools = nullptr);

}  // namespace ranktune::eval
