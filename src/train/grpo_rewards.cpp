// The built-in rewards of grpo.reward_funcs: R1's rule-based accuracy and format rewards
// (prompt/reward.h) and a length penalty, as RewardFunctions.

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/prompt/reward.h"
#include "ranktune/prompt/template.h"
#include "ranktune/train/grpo.h"

#include <algorithm>

namespace ranktune::train {

const std::vector<std::string>& builtin_reward_names() {
  static const std::vector<std::string> names = {"accuracy", "accuracy_flexible", "format", "length"};
  return names;
}

RewardFunction builtin_reward(const std::string& name, std::shared_ptr<const prompt::PromptTemplate> tmpl) {
  const auto& names = builtin_reward_names();
  RANKTUNE_CHECK_CTX(std::find(names.begin(), names.end(), name) != names.end(),
                     (ErrorContext{"", "grpo.reward_funcs", -1}), "'", name,
                     "' is not a built-in reward; built-in: ", join(names),
                     " (custom rewards are given as functions, from C++ or Python)");
  auto each = [](std::function<double(const RewardBatch&, size_t)> score) {
    return [score](const RewardBatch& batch) {
      RewardScores out;
      for (size_t i = 0; i < batch.completions.size(); ++i) out.emplace_back(score(batch, i));
      return out;
    };
  };
  if (name == "accuracy" || name == "accuracy_flexible") {
    const auto mode = name == "accuracy" ? prompt::AnswerMode::strict : prompt::AnswerMode::flexible;
    return {name, each([tmpl, mode](const RewardBatch& b, size_t i) {
              return prompt::accuracy_reward(b.completions[i], b.examples[i]->answer, *tmpl, mode);
            })};
  }
  if (name == "format") {
    return {name, each([tmpl](const RewardBatch& b, size_t i) { return prompt::format_reward(b.completions[i], *tmpl); })};
  }
  // length: -len / max_completion_length in [-1, 0]; its weight sets the penalty's strength.
  return {name, each([](const RewardBatch& b, size_t i) {
            return -static_cast<double>(b.completion_lengths[i]) / static_cast<double>(std::max<int64_t>(1, b.max_completion_length));
          })};
}

}  // namespace ranktune::train
