#pragma once
// Rule-based rewards for reinforcement learning on verifiable answers (DeepSeek-R1's accuracy
// and format rewards). Both return 0 or 1 and cut the completion at the template's stop strings
// first.
//
//   double r = accuracy_reward(completion, "72", tmpl) + 0.5 * format_reward(completion, tmpl);

#include <string>

namespace ranktune::prompt {

class PromptTemplate;

// Which extraction accuracy_reward scores (see answer.h).
enum class AnswerMode {
  strict,    // the answer must be in the template's own format (R1: "#### 72", <answer>72</answer>)
  flexible,  // any known format, else the last number
};

// 1 when the answer extracted from `completion` matches `gold` (answers_match), else 0. `gold` is
// the final answer ("72", "1,000"); data::split_gsm8k_answer takes it out of a GSM8K solution.
double accuracy_reward(const std::string& completion, const std::string& gold, const PromptTemplate& tmpl,
                       AnswerMode mode = AnswerMode::strict);

// 1 when the completion has the template's required structure, else 0. With a format_pattern
// (r1: "<think>...</think> <answer>...</answer>" and nothing else), the completion, cut at the
// stop strings and stripped of surrounding white space, must match it entirely; otherwise the
// template's answer_pattern must find an answer.
double format_reward(const std::string& completion, const PromptTemplate& tmpl);

}  // namespace ranktune::prompt
