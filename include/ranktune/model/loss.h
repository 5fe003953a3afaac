#pragma once
// The causal-LM loss as transformers computes it — logits[:, :-1] against labels[:, 1:], mean
// cross-entropy in fp32 over labels != -100 (NaN when none counts) — from logits, or straight from
// the final hidden states without ever holding the [tokens, vocab] logits.

#include <torch/types.h>

namespace ranktune::model {

torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// The same loss for logits = hidden · weightᵀ ([batch, seq, hidden] and [vocab, hidden]), computed
// `chunk` tokens at a time. With gradients enabled, each chunk's gradients (for hidden, and for
// weight when it requires one) are computed in the same pass and kept ([tokens, hidden] — small),
// so backward only scales them: the memory of full-vocabulary logits, their log-softmax and their
// gradient is never needed, and nothing is recomputed.
torch::Tensor chunked_causal_lm_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                                     int64_t chunk = 256);

}  // namespace ranktune::model
