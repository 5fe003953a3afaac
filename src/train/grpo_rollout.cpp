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

Rollout sample_rollout(model::CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                       int64_t num_generations, const model::GenerationOptions& options) {
  // Each prompt is prefilled once and its cache shared by its group (num_return_sequences).
  model::GenerationOptions group = options;
  group.num_return_sequences(num_generations);
  std::vector<model::Generation> generated = model::generate(model, prompts, group);
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(generated.size());
  for (const auto& p : prompts) {
    for (int64_t k = 0; k < num_generations; ++k) rows.push_back(p);
  }
  std::vector<std::vector<int64_t>> completions;
  std::vector<bool> truncated;
  for (auto& g : generated) {
    truncated.push_back(g.finish_reason == "length");
    completions.push_back(std::move(g.tokens));
  }
  Rollout out = layout_rollout(rows, std::move(completions), options.pad_token_id());
  out.truncated = std::move(truncated);
  return out;
}

}  // namespace ranktune::train
