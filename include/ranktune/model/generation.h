#pragma once
// Text generation with a KV cache: greedy or sampled (temperature, top-k, top-p, seeded), for one
// prompt or a batch (left-padded, so every row gets exactly the tokens it would get alone), until
// an end-of-sequence id, a stop condition or max_new_tokens. Several samples of one prompt
// (num_return_sequences) share its prefill.
//
//   auto out = generate(*model, {{1, 403, 407}}, GenerationOptions().max_new_tokens(32));

#include "ranktune/model/causal_lm.h"

#include <torch/arg.h>

#include <functional>
#include <string>
#include <vector>

namespace ranktune::model {

// Called after each new token of a row with that row's generated ids; true stops the row.
using StopCondition = std::function<bool(const std::vector<int64_t>& generated)>;
// Called after each new token of a row; returns tokens to insert next, in place of the model's
// own choices (a tool's output, e.g. the calculator's result). Empty: nothing to insert.
using TokenInjector = std::function<std::vector<int64_t>(const std::vector<int64_t>& generated)>;

struct GenerationOptions {
  TORCH_ARG(int64_t, max_new_tokens) = 64;
  // 0 means greedy decoding; otherwise logits are divided by it before sampling.
  TORCH_ARG(double, temperature) = 0.0;
  // Keep only the k most likely tokens when sampling (0: off).
  TORCH_ARG(int64_t, top_k) = 0;
  // Keep the smallest set of tokens whose probability reaches top_p when sampling (1: off).
  TORCH_ARG(double, top_p) = 1.0;
  // Each result row r samples from its own generator, seeded with `seed` for row 0 (so one prompt
  // samples as it always has) and with a mix of `seed` and r for the others: a row's draws do not
  // depend on the other rows, how many there are, or when they finish.
  TORCH_ARG(uint64_t, seed) = 0;
  // Samples per prompt (transformers' name): each prompt is prefilled once and its cache copied to
  // this many rows; row i * num_return_sequences + j of the result is prompt i's j-th sample.
  TORCH_ARG(int64_t, num_return_sequences) = 1;
  // > 1 discourages tokens already in the row (prompt and generated), as transformers'
  // repetition_penalty (Keskar et al. 2019): a seen token's logit is divided by it when positive,
  // multiplied when negative. Small models otherwise loop easily under greedy decoding. 1: off.
  TORCH_ARG(double, repetition_penalty) = 1.0;
  // > 0 forbids any n-gram of this size from occurring twice in a row (prompt and generated), as
  // transformers' no_repeat_ngram_size: it breaks "12 + 12 + 12 + ..." loops without penalising
  // tokens a solution needs again and again (digits, "+", newlines). 0: off.
  TORCH_ARG(int64_t, no_repeat_ngram_size) = 0;
  // Generation of a row ends after one of these ids (which is kept in the output).
  TORCH_ARG(std::vector<int64_t>, eos_token_ids) = {};
  // Filler for left padding and for rows that already finished.
  TORCH_ARG(int64_t, pad_token_id) = 0;
  TORCH_ARG(StopCondition, stop) = nullptr;
  TORCH_ARG(TokenInjector, inject) = nullptr;
};

struct Generation {
  std::vector<int64_t> tokens;  // the generated ids, without the prompt
  std::vector<bool> from_tool;  // per token: inserted by options.inject (a tool's response), not sampled
  std::string finish_reason;    // "eos", "stop" or "length"
};

// Runs in inference mode (no gradients, dropout off) and restores the model's training flag.
// Throws ranktune::Error for an empty prompt or invalid options.
std::vector<Generation> generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options);

// A StopCondition true once the decoded generated text contains any of `stop_strings`.
StopCondition stop_at_strings(std::vector<std::string> stop_strings,
                              std::function<std::string(const std::vector<int64_t>&)> decode);

// Applies options.repetition_penalty in place to one row's logits [vocab] given its tokens so far.
void penalize_repetitions(torch::Tensor& row_logits, const std::vector<int64_t>& seen, double penalty);

// Sets to -inf the logits of tokens that would repeat an n-gram of `seen` (no_repeat_ngram_size).
void ban_repeated_ngrams(torch::Tensor& row_logits, const std::vector<int64_t>& seen, int64_t n);

// The next-token choice for a batch of logits [batch, vocab] (greedy when temperature is 0); row b
// samples with row_generators[b].
torch::Tensor choose_next_tokens(const torch::Tensor& logits, const GenerationOptions& options,
                                 std::vector<at::Generator>& row_generators);

// The seed of result row `row`'s sampling generator (GenerationOptions::seed).
uint64_t row_seed(uint64_t seed, int64_t row);

}  // namespace ranktune::model
