#include "ranktune/eval/rejection_sampling.h"

#include "batched_generation.h"

#include "ranktune/core/error.h"
#include "ranktune/core/progress.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/prompt/reward.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <set>

namespace ranktune::eval {

SampleScorer reward_scorer(const prompt::PromptTemplate& tmpl, prompt::AnswerMode answer, double format_weight) {
  return [tmpl, answer, format_weight](const std::string& completion, const data::Example& example) {
    ScoredSample s;
    s.completion = prompt::cut_at_stop(completion, tmpl.stop());
    const double accuracy = prompt::accuracy_reward(completion, example.answer, tmpl, answer);
    s.correct = accuracy == 1.0;
    s.reward = accuracy + format_weight * prompt::format_reward(completion, tmpl);
    return s;
  };
}

std::vector<size_t> select_samples(const std::vector<ScoredSample>& samples, SampleKeep keep) {
  std::vector<size_t> out;
  switch (keep) {
    case SampleKeep::all_correct: {
      std::set<std::string> seen;  // the same trace twice would only weigh it double
      for (size_t i = 0; i < samples.size(); ++i) {
        if (samples[i].correct && seen.insert(samples[i].completion).second) out.push_back(i);
      }
      break;
    }
    case SampleKeep::best_of_k: {
      for (size_t i = 0; i < samples.size(); ++i) {
        if (samples[i].correct && (out.empty() || samples[i].reward > samples[out[0]].reward)) out = {i};
      }
      break;
    }
    case SampleKeep::first_correct:
      for (size_t i = 0; i < samples.size(); ++i) {
        if (samples[i].correct) return {i};
      }
      break;
  }
  return out;
}

std::string SampleSummary::to_json() const {
  nlohmann::ordered_json j;
  j["questions"] = questions;
  j["samples_per_question"] = samples_per_question;
  j["samples"] = samples;
  j["correct"] = correct;
  j["kept"] = kept;
  j["questions_kept"] = questions_kept;
  j["pass_at_1"] = pass_at_1;
  j["pass_at_" + std::to_string(samples_per_question)] = pass_at_k;
  j["generated_tokens"] = generated_tokens;
  j["seconds"] = seconds;
  return j.dump();
}

SampleSummary rejection_sample(model::CausalLMImpl& model, const tokenizer::Tokenizer& tokenizer,
                               const prompt::PromptTemplate& given_template, const std::vector<data::Example>& examples,
                               const SampleOptions& options, const std::string& output_path,
                               const SampleScorer& given_scorer, std::shared_ptr<const prompt::ToolRegistry> tools) {
  const auto start = std::chrono::steady_clock::now();
  RANKTUNE_CHECK(!examples.empty(), "nothing to sample: no questions");
  RANKTUNE_CHECK(options.num_samples > 0, "sample.num_samples must be positive, got ", options.num_samples);
  RANKTUNE_CHECK(options.batch_size > 0, "sample.batch_size must be positive, got ", options.batch_size);
  RANKTUNE_CHECK_CTX(!output_path.empty(), (ErrorContext{"", "sample.output", -1}), "no output file: set sample.output");
  prompt::PromptTemplate tpl = given_template;
  tpl.use_tokenizer(tokenizer);  // template: chat renders with the model's chat template
  const SampleScorer scorer = given_scorer ? given_scorer : reward_scorer(tpl, options.answer, options.format_weight);

  std::vector<std::string> questions;
  for (const auto& e : examples) questions.push_back(e.question);
  const auto prompts = template_prompt_ids(tokenizer, tpl, questions);
  model::GenerationOptions generation =
      train::template_generation_options(tokenizer, tpl, options.max_new_tokens, options.calculator, std::move(tools));
  generation.temperature(options.temperature)
      .top_p(options.top_p)
      .top_k(options.top_k)
      .repetition_penalty(options.repetition_penalty)
      .seed(options.seed);

  SampleSummary summary;
  summary.questions = static_cast<int64_t>(examples.size());
  summary.samples_per_question = options.num_samples;
  summary.samples = summary.questions * options.num_samples;
  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(summary.samples, "sample");
  const auto ids = generate_all(model, prompts, options.num_samples, generation, options.batch_size, bar.get(),
                                summary.generated_tokens);
  if (bar) bar->finish();

  // A chat turn ends with its marker, which the trainer does not add (a plain template's EOS it does).
  const std::string end_of_turn = tpl.format() == prompt::ChatFormat::plain ? "" : tpl.end_of_turn();
  std::string lines;
  double pass_1 = 0, pass_k = 0;
  for (size_t q = 0; q < examples.size(); ++q) {
    std::vector<ScoredSample> scored;
    int64_t correct = 0;
    for (int64_t k = 0; k < options.num_samples; ++k) {
      const auto& row = ids[q * static_cast<size_t>(options.num_samples) + static_cast<size_t>(k)];
      scored.push_back(scorer(tokenizer.decode(row, /*skip_special_tokens=*/true), examples[q]));
      correct += scored.back().correct;
    }
    summary.correct += correct;
    pass_1 += pass_at_k(options.num_samples, correct, 1);
    pass_k += pass_at_k(options.num_samples, correct, options.num_samples);
    const std::vector<size_t> kept = select_samples(scored, options.keep);
    summary.kept += static_cast<int64_t>(kept.size());
    summary.questions_kept += kept.empty() ? 0 : 1;
    const std::string prompt = tpl.render_prompt(examples[q].question);
    for (size_t k : kept) {
      nlohmann::ordered_json j;
      j["prompt"] = prompt;
      j["completion"] = scored[k].completion + end_of_turn;
      j["question"] = examples[q].question;
      j["gold"] = examples[q].answer;
      j["reward"] = scored[k].reward;
      j["sample"] = k;
      // Invalid UTF-8 (a byte-level model can stop inside a character) becomes U+FFFD.
      lines += j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    }
  }
  summary.pass_at_1 = pass_1 / static_cast<double>(examples.size());
  summary.pass_at_k = pass_k / static_cast<double>(examples.size());
  io::write_file_atomic(output_path, lines);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace ranktune::eval
