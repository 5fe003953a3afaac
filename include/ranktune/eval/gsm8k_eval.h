#pragma once
// GSM8K-style evaluation of a model with a chain-of-thought template: batched generation that stops
// at the template's stop strings, answers extracted strictly (the template's own format) and
// flexibly (any known format, else the last number), greedy accuracy, self-consistency (majority
// vote over sampled chains, Wang et al. 2023) and pass@k (Chen et al. 2021's unbiased estimator).
// Optionally the GSM8K paper's calculator: when the model writes `<<expr=`, the result is inserted.

#include "ranktune/data/examples.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::model {
class CausalLMImpl;
}
namespace ranktune::prompt {
class PromptTemplate;
}
namespace ranktune::tokenizer {
class Tokenizer;
}

namespace ranktune::eval {

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

struct EvalSummary {
  int64_t questions = 0;
  // Of the main completions (greedy unless EvalOptions::greedy is false):
  double accuracy_strict = 0;    // answer in the template's format and correct
  double accuracy_flexible = 0;  // answer in any format (or the last number) and correct
  double format_rate = 0;        // completions that contain the template's answer format
  std::optional<double> majority_accuracy;  // maj@samples
  std::map<int64_t, double> pass_at_k;
  int64_t generated_tokens = 0;
  double seconds = 0;
  // {"questions": …, "accuracy_strict": …, …}
  std::string to_json() const;
};

// Evaluates `examples` and, when `predictions_path` is not empty, writes one JSON line per question
// (question, gold, generated text, extracted answers, correct, samples…) atomically.
EvalSummary evaluate_gsm8k(model::CausalLMImpl& model, const tokenizer::Tokenizer& tokenizer,
                           const prompt::PromptTemplate& prompt_template, const std::vector<data::Example>& examples,
                           const EvalOptions& options, const std::string& predictions_path = "");

// Chen et al.'s unbiased pass@k for n samples of which c are correct: 1 - C(n-c, k) / C(n, k).
double pass_at_k(int64_t n, int64_t c, int64_t k);

// The most common answer after number normalisation, in its first spelling; a tie goes to the
// answer seen first; nullopt when there is none.
std::optional<std::string> majority_vote(const std::vector<std::optional<std::string>>& answers);

}  // namespace ranktune::eval
