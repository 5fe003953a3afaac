#pragma once
// What a trainer asks of an evaluation, injected by its caller: the train layer scores nothing
// itself beyond the validation loss. `ranktune train`, the Python Trainer and the examples pass the
// GSM8K evaluator (eval::make_gsm8k_evaluator); another trainer (GRPO) or task passes its own.
//
//   train::TrainerInputs inputs;
//   inputs.evaluator = eval::make_gsm8k_evaluator(config.eval.options);
//   train::Trainer trainer(config, std::move(inputs));

#include "ranktune/data/examples.h"

#include <map>
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

namespace ranktune::train {

class Communicator;  // train/distributed.h

enum class EvaluationKind {
  during_training,  // at train.eval_every, on eval.during_training questions: quick, silent
  on_request,       // Trainer::evaluate(): quick, with a progress bar when the trainer shows one
  final_run,        // the end of a run: every option as the recipe gives it, predictions written
};

struct EvaluationRequest {
  model::CausalLMImpl& model;
  const tokenizer::Tokenizer& tokenizer;
  const prompt::PromptTemplate& prompt_template;
  const std::vector<data::Example>& questions;
  EvaluationKind kind;
  bool progress_bar = false;     // on_request: the trainer's progress-bar setting
  std::string predictions_path;  // final_run: where one JSON line per question goes (atomically)
  // Data-parallel workers (null: one process): every worker is asked the same request; an evaluator
  // may shard the questions, gather the results and return the same Evaluation on every worker
  // (rank 0 writes the predictions).
  Communicator* communicator = nullptr;
};

struct Evaluation {
  // Metric name -> value, without the "eval_" prefix the trainer's metrics rows add
  // ("accuracy_strict" becomes "eval_accuracy_strict").
  std::map<std::string, double> metrics;
  // A JSON object describing the evaluation, for summary.json's "eval" (empty: none).
  std::string summary_json;
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual Evaluation evaluate(const EvaluationRequest& request) = 0;
};

}  // namespace ranktune::train
