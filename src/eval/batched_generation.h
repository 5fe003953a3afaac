#pragma once
// Generation as the eval layer's commands do it (evaluate_gsm8k, rejection_sample): the options a
// template gives (end-of-turn ids, stop strings, its tools) and prompts generated in seeded batches.

#include "ranktune/model/generation.h"
#include "ranktune/train/template_generation.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ranktune {
class ProgressBar;
}
// (prompt::PromptTemplate and tokenizer::Tokenizer are declared by template_generation.h.)

namespace ranktune::eval {

// The template's generation options: train::template_generation_options (GRPO uses them too).

// Each prompt's ids as the template renders it (BOS added unless the template writes its own).
std::vector<std::vector<int64_t>> template_prompt_ids(const tokenizer::Tokenizer& tokenizer,
                                                      const prompt::PromptTemplate& tpl,
                                                      const std::vector<std::string>& questions);

// Generates `copies` completions of each of `prompts` (copies of a prompt are adjacent), about
// `batch_size` rows at a time: each prompt is prefilled once and sampled `copies` times
// (num_return_sequences); a batch is seeded with options.seed + its first row, so samples are
// independent across batches and reproducible. Adds the generated ids to
// `generated_tokens` and updates `bar` (when not null) with the rows done.
std::vector<std::vector<int64_t>> generate_all(model::CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                               int64_t copies, const model::GenerationOptions& options,
                                               int64_t batch_size, ProgressBar* bar, int64_t& generated_tokens);

}  // namespace ranktune::eval
