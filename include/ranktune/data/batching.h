#pragma once
// From rendered (prompt, response) text to training batches: token ids with the loss only on the
// response (prompt labels are -100), over-long examples truncated or skipped, dynamic padding,
// and length-grouped shuffled batches whose order is a pure function of (seed, epoch) so a run
// can resume at any batch.

#include "ranktune/data/sft.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ranktune::data {

// The text of one training example, already rendered by a prompt template.
struct TextPair {
  std::string prompt;
  std::string response;
};

enum class Overlong { truncate, skip };

struct TokenizeOptions {
  int64_t max_length = 512;
  Overlong overlong = Overlong::skip;
  bool add_bos = true;  // the tokenizer's special tokens before the prompt (off when the template writes its own)
  bool add_eos = true;  // EOS after the response (off when the template ends with its own end-of-turn token)
};

struct TokenizedExample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;  // -100 on the prompt (untrained segments), the ids on the response
  int64_t source_index = 0;     // index into the TextPair (segment) list; -1 for a packed sequence
  // A packed sequence: the lengths of the examples it holds, in order (empty: one example).
  std::vector<int64_t> packed_lengths;
};

struct TokenizeReport {
  int64_t total = 0;
  int64_t truncated = 0;
  int64_t skipped = 0;
  int64_t longest = 0;  // before truncation
  std::string describe() const;
};

// Prompt and response are tokenized separately (so training sees the prompt exactly as generation
// will) and concatenated. An example longer than max_length is truncated from the end of the
// response, or skipped; one whose prompt alone fills max_length is always skipped.
std::vector<TokenizedExample> tokenize_pairs(const std::vector<TextPair>& pairs, const tokenizer::Tokenizer& tokenizer,
                                             const TokenizeOptions& options, TokenizeReport* report = nullptr);

// The general form (tokenize_pairs is a prompt segment and a trained response segment): each
// segment is tokenized on its own (the first with the BOS when add_bos) and the ids concatenated;
// labels are the ids of trained segments and -100 elsewhere; EOS (add_eos) carries a label when the
// last segment is trained. Over-long examples are cut from the end (truncate) or skipped; one with
// no label left after cutting is always skipped.
std::vector<TokenizedExample> tokenize_segments(const std::vector<std::vector<Segment>>& examples,
                                                const tokenizer::Tokenizer& tokenizer, const TokenizeOptions& options,
                                                TokenizeReport* report = nullptr);

// Packing (TRL's packing with position ids): examples put together, best fit decreasing, into
// sequences of at most `max_length` tokens, in an order that depends only on the lengths. Each
// example's first label is -100 (nothing before it in its own example predicts it). collate gives a
// packed sequence the attention mask 1, 1, 2, 2, 2, ... (each token's example number), from which
// the model confines attention to each example and restarts its positions.
std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int64_t max_length);

struct Batch {
  torch::Tensor input_ids;       // [batch, longest] int64, right-padded
  torch::Tensor attention_mask;  // [batch, longest] int64: 1 for tokens (packed: example numbers), 0 for padding
  torch::Tensor labels;          // [batch, longest] int64, -100 on prompt and padding
  int64_t tokens = 0;            // non-padding tokens
  int64_t loss_tokens = 0;       // labels that count
};

// Pads to the longest example in the batch (dynamic padding).
Batch collate(const std::vector<const TokenizedExample*>& examples, int64_t pad_token_id);

// Shuffled batches of similar length (as transformers' group_by_length): each epoch's order is
// drawn from (seed, epoch); within mega-batches of 50 batches, examples are sorted by length, so
// padding stays small while batches still vary.
class BatchPlan {
 public:
  BatchPlan(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed, bool group_by_length = true);
  // The example indices of each batch of `epoch`, in order. The last batch may be smaller.
  std::vector<std::vector<int64_t>> epoch_batches(int64_t epoch) const;
  int64_t batches_per_epoch() const;

 private:
  std::vector<int64_t> lengths_;
  int64_t batch_size_;
  uint64_t seed_;
  bool group_by_length_;
};

}  // namespace ranktune::data
