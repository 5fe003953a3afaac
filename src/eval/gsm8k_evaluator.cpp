// The GSM8K evaluation behind the trainer's Evaluator interface.

#include "ranktune/eval/gsm8k_eval.h"

namespace ranktune::eval {
namespace {

class Gsm8kEvaluator : public train::Evaluator {
 public:
  explicit Gsm8kEvaluator(EvalOptions options) : options_(std::move(options)) {}

  train::Evaluation evaluate(const train::EvaluationRequest& request) override {
    const EvalSummary summary = evaluate_gsm8k(request.model, request.tokenizer, request.prompt_template,
                                               request.questions, options_for(request), request.predictions_path);
    train::Evaluation out;
    out.metrics["accuracy_strict"] = summary.accuracy_strict;
    out.metrics["accuracy_flexible"] = summary.accuracy_flexible;
    out.metrics["format_rate"] = summary.format_rate;
    if (summary.majority_accuracy) out.metrics["accuracy_majority"] = *summary.majority_accuracy;
    for (const auto& [k, v] : summary.pass_at_k) out.metrics["pass_at_" + std::to_string(k)] = v;
    out.summary_json = summary.to_json();
    return out;
  }

 private:
  // The final evaluation uses eval.* as given; the others skip the extra samples.
  EvalOptions options_for(const train::EvaluationRequest& request) const {
    if (request.kind == train::EvaluationKind::final_run) return options_;
    EvalOptions o = options_;
    o.samples = 0;
    o.pass_at_k.clear();
    o.progress = request.kind == train::EvaluationKind::on_request && request.progress_bar;
    return o;
  }

  EvalOptions options_;
};

}  // namespace

std::shared_ptr<train::Evaluator> make_gsm8k_evaluator(EvalOptions options) {
  return std::make_shared<Gsm8kEvaluator>(std::move(options));
}

}  // namespace ranktune::eval
