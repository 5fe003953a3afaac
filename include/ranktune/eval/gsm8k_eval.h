#pragma once
// GSM8K-style evaluation of a model with a chain-of-thought template: batched generation that stops
// at the template's stop strings, answers extracted strictly (the template's own format) and
// flexibly (any known format, else the last number), greedy accuracy, self-consistency (majority
// vote over sampled chains, Wang et al. 2023) and pass@k (Chen et al. 2021's unbiased estimator).
// Tools: the template's tool-call syntax (prompt/tools.h), or with EvalOptions::calculator the GSM8K
// paper's calculator (when the model writes `<<expr=`, the result is inserted).

#include "ranktune/data/examples.h"
#include "ranktune/train/config.h"
#include "ranktune/train/evaluator.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// model::CausalLMImpl, prompt::PromptTemplate and tokenizer::Tokenizer are declared in evaluator.h.

namespace ranktune::prompt {
class ToolRegistry;
}

namespace ranktune::eval {

// The options (eval.* in a recipe) live with the recipe, which the train layer reads.
using train::EvalOptions;

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
// (question, gold, generated text, extracted answers, correct, samples…) atomically. `tools`: the
// tools a template's calls reach (null: ToolRegistry::with_builtins()).
EvalSummary evaluate_gsm8k(model::CausalLMImpl& model, const tokenizer::Tokenizer& tokenizer,
                           const prompt::PromptTemplate& prompt_template, const std::vector<data::Example>& examples,
                           const EvalOptions& options, const std::string& predictions_path = "",
                           std::shared_ptr<const prompt::ToolRegistry> tools = nullptr);

// The GSM8K evaluation as a trainer's Evaluator (train/evaluator.h): the final evaluation of a run
// uses `options` as given; evaluations during training and on request skip the extra samples and
// pass@k. Metrics: accuracy_strict, accuracy_flexible, format_rate, accuracy_majority, pass_at_<k>.
std::shared_ptr<train::Evaluator> make_gsm8k_evaluator(EvalOptions options);

// Chen et al.'s unbiased pass@k for n samples of which c are correct: 1 - C(n-c, k) / C(n, k).
double pass_at_k(int64_t n, int64_t c, int64_t k);

// The most common answer after number normalisation, in its first spelling; a tie goes to the
// answer seen first; nullopt when there is none.
std::optional<std::string> majority_vote(const std::vector<std::optional<std::string>>& answers);

}  // namespace ranktune::eval
