#pragma once
// Per-token log-probabilities of given tokens (and the entropy of each position's distribution)
// from a causal LM, computed through the output head `chunk` tokens at a time: the [tokens, vocab]
// logits of a batch are never held, in forward or in backward (which recomputes each chunk's
// softmax instead of storing it). GRPO's policy, old-policy and reference log-probs. Internal to
// the train layer.

#include <torch/types.h>

#include <cstdint>

namespace ranktune::model {
class CausalLMImpl;
}

namespace ranktune::train {

struct TokenLogProbs {
  torch::Tensor logps;    // [batch, completion] fp32, differentiable when gradients are enabled
  torch::Tensor entropy;  // [batch, completion] fp32, no gradient
};

// log softmax(h Wᵀ / temperature)[target] and the entropy of softmax(h Wᵀ / temperature), for
// hidden [n, hidden], weight [vocab, hidden], targets [n]; `chunk` rows at a time. Gradients flow
// to hidden (and weight, when it requires one).
TokenLogProbs chunked_token_log_probs(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                                      double temperature, int64_t chunk);

// The log-probs of the last `completion_length` tokens of each row of input_ids [batch, seq] given
// the tokens before them (attention_mask [batch, seq]), with the logits divided by temperature (as
// TRL samples and scores at the same temperature). One forward pass for the hidden states, then
// the head in chunks. A head with a bias or an active adapter goes through its own forward, chunk
// by chunk (then each chunk's logits are kept for backward).
TokenLogProbs completion_log_probs(model::CausalLMImpl& model, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask, int64_t completion_length, double temperature,
                                   int64_t chunk);

}  // namespace ranktune::train
