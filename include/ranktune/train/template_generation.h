#pragma once
// The generation options a prompt template gives: its end-of-turn id and EOS end a row, its stop
// strings stop it, and its `tools:` syntax (or the GSM8K calculator) answers tool calls. One place
// for every loop that generates from a template: evaluation, rejection sampling, GRPO rollouts.

#include "ranktune/model/generation.h"

#include <cstdint>
#include <memory>

namespace ranktune::prompt {
class PromptTemplate;
class ToolRegistry;
}  // namespace ranktune::prompt
namespace ranktune::tokenizer {
class Tokenizer;
}

namespace ranktune::train {

// Greedy options for `tpl` (use_tokenizer already called) with at most `max_new_tokens` new
// tokens; `calculator` adds the GSM8K calculator and `tools` answers the template's tool calls
// (null: the built-ins). Set temperature, top_p, ... on the result to sample.
model::GenerationOptions template_generation_options(const tokenizer::Tokenizer& tokenizer,
                                                     const prompt::PromptTemplate& tpl, int64_t max_new_tokens,
                                                     bool calculator, std::shared_ptr<const prompt::ToolRegistry> tools);

}  // namespace ranktune::train
