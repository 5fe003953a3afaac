#include "ranktune/eval/gsm8k_eval.h"

#include "batched_generation.h"

#include "ranktune/core/error.h"
#include "ranktune/core/progress.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <map>

namespace ranktune::eval {
namespace {

using Clock = std::chrono::steady_clock;

struct Completion {
  std::string text;
  prompt::Extraction answer;
  bool correct_strict = false;
  bool correct_flexible = false;
};

}  // namespace

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  RANKTUNE_CHECK(k > 0 && k <= n, "pass@k needs 0 < k <= samples, got k=", k, " with ", n, " samples");
  if (n - c < k) return 1.0;
  // 1 - C(n-c, k)/C(n, k) = 1 - Π_{i=n-c+1}^{n} (1 - k/i), stable for large n.
  double none = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) none *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - none;
}

std::optional<std::string> majority_vote(const std::vector<std::optional<std::string>>& answers) {
  // Votes are counted on normalised numbers ("1,000" and "1000" agree); the answer returned is the
  // first spelling of the winner, and a tie goes to the answer seen first.
  struct Tally {
    int64_t count = 0;
    size_t first = 0;
    std::string spelling;
  };
  std::map<std::string, Tally> tallies;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i]) continue;
    Tally& t = tallies[prompt::normalize_number(*answers[i])];
    if (t.count++ == 0) {
      t.first = i;
      t.spelling = *answers[i];
    }
  }
  const Tally* best = nullptr;
  for (const auto& [key, t] : tallies) {
    if (best == nullptr || t.count > best->count || (t.count == best->count && t.first < best->first)) best = &t;
  }
  if (best == nullptr) return std::nullopt;
  return best->spelling;
}

std::string EvalSummary::to_json() const {
  nlohmann::ordered_json j;
  j["questions"] = questions;
  j["accuracy_strict"] = accuracy_strict;
  j["accuracy_flexible"] = accuracy_flexible;
  j["format_rate"] = format_rate;
  if (majority_accuracy) j["accuracy_majority"] = *majority_accuracy;
  for (const auto& [k, v] : pass_at_k) j["pass_at_" + std::to_string(k)] = v;
  j["generated_tokens"] = generated_tokens;
  j["seconds"] = seconds;
  return j.dump();
}

EvalSummary evaluate_gsm8k(model::CausalLMImpl& model, const tokenizer::Tokenizer& tokenizer,
                           const prompt::PromptTemplate& given_template, const std::vector<data::Example>& examples,
                           const EvalOptions& options, const std::string& predictions_path,
                           std::shared_ptr<const prompt::ToolRegistry> tools_registry) {
  prompt::PromptTemplate tpl = given_template;
  tpl.use_tokenizer(tokenizer);  // template: chat renders with the model's chat template
  RANKTUNE_CHECK(!examples.empty(), "nothing to evaluate: no questions");
  for (int64_t k : options.pass_at_k) {
    RANKTUNE_CHECK(k > 0 && k <= options.samples, "eval.pass_at_k: k=", k, " needs eval.samples >= k (samples=",
                   options.samples, ")");
  }
  const auto start = Clock::now();
  std::vector<std::string> texts;
  for (const auto& e : examples) texts.push_back(e.question);
  const std::vector<std::vector<int64_t>> prompts = template_prompt_ids(tokenizer, tpl, texts);
  model::GenerationOptions generation =
      train::template_generation_options(tokenizer, tpl, options.max_new_tokens, options.calculator, std::move(tools_registry));
  generation.repetition_penalty(options.repetition_penalty)
      .no_repeat_ngram_size(options.no_repeat_ngram_size)
      .seed(options.seed);
  const tokenizer::Tokenizer tok = tokenizer;
  auto decode = [tok](const std::vector<int64_t>& ids) { return tok.decode(ids, /*skip_special_tokens=*/true); };

  const int64_t total_rows = static_cast<int64_t>(examples.size()) * (1 + options.samples);
  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(total_rows, "eval");
  EvalSummary summary;
  summary.questions = static_cast<int64_t>(examples.size());
  auto score = [&](const std::vector<int64_t>& ids, const data::Example& e) {
    Completion c;
    c.text = prompt::cut_at_stop(decode(ids), tpl.stop());
    c.answer = prompt::extract(c.text, tpl.answer_pattern());
    c.correct_strict = c.answer.strict && prompt::answers_match(*c.answer.strict, e.answer);
    c.correct_flexible = c.answer.flexible && prompt::answers_match(*c.answer.flexible, e.answer);
    return c;
  };

  model::GenerationOptions sampling = generation;
  sampling.temperature(options.temperature).top_p(options.top_p).top_k(options.top_k);
  const auto main_ids = generate_all(model, prompts, 1, options.greedy ? generation : sampling, options.batch_size,
                                       bar.get(), summary.generated_tokens);
  std::vector<std::vector<int64_t>> sample_ids;
  if (options.samples > 0) {
    sampling.seed(options.seed + 1000003);  // independent of the main completions' draws
    sample_ids = generate_all(model, prompts, options.samples, sampling, options.batch_size, nullptr, summary.generated_tokens);
    if (bar) bar->update(total_rows);
  }
  if (bar) bar->finish();

  std::string lines;
  int64_t strict = 0, flexible = 0, formatted = 0, majority = 0;
  std::map<int64_t, double> pass_sums;
  for (size_t q = 0; q < examples.size(); ++q) {
    const data::Example& e = examples[q];
    const Completion main = score(main_ids[q], e);
    strict += main.correct_strict;
    flexible += main.correct_flexible;
    formatted += main.answer.strict.has_value();
    nlohmann::ordered_json j;
    j["question"] = e.question;
    j["gold"] = e.answer;
    j["generated"] = main.text;
    j["extracted_strict"] = main.answer.strict ? nlohmann::ordered_json(*main.answer.strict) : nlohmann::ordered_json(nullptr);
    j["extracted"] = main.answer.flexible ? nlohmann::ordered_json(*main.answer.flexible) : nlohmann::ordered_json(nullptr);
    j["correct_strict"] = main.correct_strict;
    j["correct"] = main.correct_flexible;
    if (options.samples > 0) {
      std::vector<std::optional<std::string>> answers;
      int64_t correct = 0;
      nlohmann::ordered_json samples = nlohmann::ordered_json::array();
      for (int64_t k = 0; k < options.samples; ++k) {
        const Completion c = score(sample_ids[q * static_cast<size_t>(options.samples) + static_cast<size_t>(k)], e);
        answers.push_back(c.answer.flexible);
        correct += c.correct_flexible;
        samples.push_back({{"generated", c.text}, {"extracted", c.answer.flexible ? nlohmann::ordered_json(*c.answer.flexible) : nlohmann::ordered_json(nullptr)}, {"correct", c.correct_flexible}});
      }
      const auto vote = majority_vote(answers);
      const bool vote_correct = vote && prompt::answers_match(*vote, e.answer);
      majority += vote_correct;
      for (int64_t k : options.pass_at_k) pass_sums[k] += pass_at_k(options.samples, correct, k);
      j["majority_answer"] = vote ? nlohmann::ordered_json(*vote) : nlohmann::ordered_json(nullptr);
      j["majority_correct"] = vote_correct;
      j["samples"] = samples;
    }
    lines += j.dump() + "\n";
  }
  const double n = static_cast<double>(examples.size());
  summary.accuracy_strict = static_cast<double>(strict) / n;
  summary.accuracy_flexible = static_cast<double>(flexible) / n;
  summary.format_rate = static_cast<double>(formatted) / n;
  if (options.samples > 0) summary.majority_accuracy = static_cast<double>(majority) / n;
  for (const auto& [k, sum] : pass_sums) summary.pass_at_k[k] = sum / n;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!predictions_path.empty()) io::write_file_atomic(predictions_path, lines);
  return summary;
}

}  // namespace ranktune::eval
