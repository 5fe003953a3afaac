#pragma once
// GRPO's rollouts: completions sampled for a round of prompts (each prompt repeated G times,
// side by side) and laid out as the tensors the policy's log-probs are computed on. Internal to
// the train layer.

#include "ranktune/model/generation.h"

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ranktune::train {

struct Rollout {
  torch::Tensor input_ids;        // [rows, prompt + completion]: prompts left-padded, completions right-padded
  torch::Tensor attention_mask;   // [rows, prompt + completion]
  torch::Tensor completion_mask;  // [rows, completion] fp32: 1 for each sampled token (the end-of-sequence one included), 0 for padding and tool responses
  int64_t completion_length = 0;  // the longest completion of these rows
  std::vector<std::vector<int64_t>> completions;  // the sampled ids of each row
  std::vector<bool> truncated;    // cut at max_new_tokens (no end-of-sequence, no stop string)
  int64_t prompt_tokens = 0;      // non-padding prompt tokens of all rows
  // Filled after scoring: the advantage of each row [rows], and the old policy's and the
  // reference's log-probs [rows, completion] when used (else undefined).
  torch::Tensor advantages, old_logps, ref_logps;
};

// Samples `num_generations` completions of each of `prompts` (token ids) with `options` in one
// generate call, each prompt prefilled once for its group, and lays the rows out as one Rollout per
// `prompts_per_rollout` prompts (a micro-batch; a group's rows next to each other). Runs without
// gradients and restores the training flag.
std::vector<Rollout> sample_rollouts(model::CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                     int64_t num_generations, int64_t prompts_per_rollout,
                                     const model::GenerationOptions& options);

// The tensors of `prompts` followed by `completions` (the layout sample_rollouts makes); exposed for tests.
Rollout layout_rollout(const std::vector<std::vector<int64_t>>& prompts, std::vector<std::vector<int64_t>> completions,
                       int64_t pad_token_id);

}  // namespace ranktune::train
