// The GSM8K evaluation behind the trainer's Evaluator interface; under data parallelism each
// worker answers a contiguous share of the questions and the shares are gathered.

#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/io/file.h"
#include "ranktune/train/distributed.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include <unistd.h>

namespace ranktune::eval {
namespace {

// Every worker's summary (EvalSummary::to_json) and prediction lines, in rank order, as one.
EvalSummary combine(const std::vector<std::string>& parts, std::string& lines) {
  EvalSummary out;
  double strict = 0, flexible = 0, formatted = 0, majority = 0;
  std::map<int64_t, double> pass;
  for (const std::string& part : parts) {
    const size_t newline = part.find('\n');
    const auto j = nlohmann::json::parse(part.substr(0, newline));
    lines += part.substr(newline + 1);
    const auto n = j.at("questions").get<int64_t>();
    if (n == 0) continue;
    out.questions += n;
    strict += j.at("accuracy_strict").get<double>() * static_cast<double>(n);
    flexible += j.at("accuracy_flexible").get<double>() * static_cast<double>(n);
    formatted += j.at("format_rate").get<double>() * static_cast<double>(n);
    if (j.contains("accuracy_majority")) majority += j.at("accuracy_majority").get<double>() * static_cast<double>(n);
    for (const auto& [key, value] : j.items()) {
      if (key.rfind("pass_at_", 0) == 0) pass[std::stoll(key.substr(8))] += value.get<double>() * static_cast<double>(n);
    }
    out.generated_tokens += j.at("generated_tokens").get<int64_t>();
    out.seconds = std::max(out.seconds, j.at("seconds").get<double>());
    if (j.contains("accuracy_majority")) out.majority_accuracy = 0;
  }
  const double n = static_cast<double>(std::max<int64_t>(out.questions, 1));
  out.accuracy_strict = strict / n;
  out.accuracy_flexible = flexible / n;
  out.format_rate = formatted / n;
  if (out.majority_accuracy) out.majority_accuracy = majority / n;
  for (const auto& [k, sum] : pass) out.pass_at_k[k] = sum / n;
  return out;
}

class Gsm8kEvaluator : public train::Evaluator {
 public:
  explicit Gsm8kEvaluator(EvalOptions options) : options_(std::move(options)) {}

  train::Evaluation evaluate(const train::EvaluationRequest& request) override {
    const EvalSummary summary = request.communicator ? evaluate_shard(request)
                                                     : evaluate_gsm8k(request.model, request.tokenizer, request.prompt_template,
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
  // This worker's contiguous share of the questions, then every share gathered; rank 0 writes the
  // predictions in question order. Greedy answers are those of one process (batches hold other
  // neighbours, so padding may differ); sampled ones are drawn per shard.
  EvalSummary evaluate_shard(const train::EvaluationRequest& request) const {
    train::Communicator& communicator = *request.communicator;
    const auto total = static_cast<int64_t>(request.questions.size());
    const int64_t rank = communicator.rank(), world = communicator.world_size();
    const auto first = request.questions.begin() + static_cast<std::ptrdiff_t>(total * rank / world);
    const auto last = request.questions.begin() + static_cast<std::ptrdiff_t>(total * (rank + 1) / world);
    const std::vector<data::Example> mine(first, last);
    EvalOptions options = options_for(request);
    options.progress = options.progress && rank == 0;
    std::string part = EvalSummary{}.to_json() + "\n";
    if (!mine.empty()) {
      // The shard's predictions go through a temporary file of this process (evaluate_gsm8k writes
      // them), read back here: another machine's worker may not see the run directory.
      const std::string shard_path =
          request.predictions_path.empty()
              ? ""
              : (std::filesystem::temp_directory_path() / c10::str("ranktune-predictions-", ::getpid(), ".jsonl")).string();
      const EvalSummary summary = evaluate_gsm8k(request.model, request.tokenizer, request.prompt_template, mine,
                                                 options, shard_path);
      part = summary.to_json() + "\n";
      if (!shard_path.empty()) {
        part += io::read_file(shard_path);
        std::filesystem::remove(shard_path);
      }
    }
    std::string lines;
    const EvalSummary summary = combine(communicator.all_gather(part), lines);
    if (rank == 0 && !request.predictions_path.empty()) io::write_file_atomic(request.predictions_path, lines);
    return summary;
  }

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
