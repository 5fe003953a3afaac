#include "grpo_rollout.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace ranktune::train {

Rollout layout_rollout(const std::vector<std::vector<int64_t>>& prompts, std::vector<std::vector<int64_t>> completions,
                       int64_t pad_token_id) {
  RANKTUNE_CHECK(!prompts.empty() && prompts.size() == completions.size(), "a rollout needs one completion per prompt (",
                 prompts.size(), " prompts, ", completions.size(), " completions)");
  const auto rows = static_cast<int64_t>(prompts.size());
  int64_t prompt_length = 0, completion_length = 1;
  for (size_t i = 0; i < prompts.size(); ++i) {
    RANKTUNE_CHECK(!prompts[i].empty(), "rollout row ", i, " has an empty prompt");
    prompt_length = std::max<int64_t>(prompt_length, static_cast<int64_t>(prompts[i].size()));
    completion_length = std::max<int64_t>(completion_length, static_cast<int64_t>(completions[i].size()));
  }
  const int64_t width = prompt_length + completion_length;
  Rollout out;
  out.completion_length = completion_length;
  out.input_ids = at::full({rows, width}, pad_token_id, at::kLong);
  out.attention_mask = at::zeros({rows, width}, at::kLong);
  out.completion_mask = at::zeros({rows, completion_length}, at::kFloat);
  auto ids = out.input_ids.accessor<int64_t, 2>();
  auto mask = out.attention_mask.accessor<int64_t, 2>();
  auto loss_mask = out.completion_mask.accessor<float, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    const auto& prompt = prompts[static_cast<size_t>(r)];
    const auto& completion = completions[static_cast<size_t>(r)];
    const int64_t start = prompt_length - static_cast<int64_t>(prompt.size());
    for (size_t j = 0; j < prompt.size(); ++j) {
      ids[r][start + static_cast<int64_t>(j)] = prompt[j];
      mask[r][start + static_cast<int64_t>(j)] = 1;
    }
    for (size_t j = 0; j < completion.size(); ++j) {
      ids[r][prompt_length + static_cast<int64_t>(j)] = completion[j];
      mask[r][prompt_length + static_cast<int64_t>(j)] = 1;
      loss_mask[r][static_cast<int64_t>(j)] = 1;
    }
    out.prompt_tokens += static_cast<int64_t>(prompt.size());
  }
  out.completions = std::move(completions);
  out.truncated.assign(prompts.size(), false);
  return out;
}

std::vector<Rollout> sample_rollouts(model::CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                     int64_t num_generations, int64_t prompts_per_rollout,
                                     const model::GenerationOptions& options) {
  const auto n = static_cast<int64_t>(prompts.size());
  RANKTUNE_CHECK(prompts_per_rollout > 0 && n % prompts_per_rollout == 0, "a round of ", n,
                 " prompts does not split into micro-batches of ", prompts_per_rollout);
  // One generate call for the whole round: decoding's cost per token falls steeply with the rows
  // decoded together (the weights are read once per step), and each prompt is prefilled once
  // for its group (num_return_sequences).
  model::GenerationOptions group = options;
  group.num_return_sequences(num_generations);
  std::vector<model::Generation> generated = model::generate(model, prompts, group);
  std::vector<Rollout> out;
  for (int64_t first = 0; first < n; first += prompts_per_rollout) {
    std::vector<std::vector<int64_t>> rows, completions;
    std::vector<std::vector<bool>> from_tool;
    std::vector<bool> truncated;
    for (int64_t p = first; p < first + prompts_per_rollout; ++p) {
      for (int64_t k = 0; k < num_generations; ++k) {
        model::Generation& g = generated[static_cast<size_t>(p * num_generations + k)];
        rows.push_back(prompts[static_cast<size_t>(p)]);
        truncated.push_back(g.finish_reason == "length");
        completions.push_back(std::move(g.tokens));
        from_tool.push_back(std::move(g.from_tool));
      }
    }
    out.push_back(layout_rollout(rows, std::move(completions), options.pad_token_id()));
    Rollout& r = out.back();
    r.truncated = std::move(truncated);
    // A tool's response was not sampled from the policy: no loss on it (TRL's tool_mask).
    auto loss_mask = r.completion_mask.accessor<float, 2>();
    for (size_t i = 0; i < from_tool.size(); ++i) {
      for (size_t j = 0; j < from_tool[i].size(); ++j) {
        if (from_tool[i][j]) loss_mask[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = 0;
      }
    }
  }
  return out;
}

}  // namespace ranktune::train
