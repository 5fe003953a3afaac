#include "ranktune/data/batching.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

namespace ranktune::data {

std::string TokenizeReport::describe() const {
  return c10::str(total - skipped, " of ", total, " examples kept (", truncated, " truncated, ", skipped,
                  " skipped as too long; longest ", longest, " tokens)");
}

std::vector<TokenizedExample> tokenize_segments(const std::vector<std::vector<Segment>>& examples,
                                                const tokenizer::Tokenizer& tokenizer, const TokenizeOptions& options,
                                                TokenizeReport* report) {
  RANKTUNE_CHECK(options.max_length > 1, "max_length must be at least 2, got ", options.max_length);
  const std::optional<int64_t> eos = tokenizer.eos_token_id();
  RANKTUNE_CHECK(!options.add_eos || eos.has_value(), "the tokenizer (", tokenizer.source(),
                 ") has no EOS token; set the template to end with its own end marker or disable add_eos");
  TokenizeReport local;
  std::vector<TokenizedExample> out;
  out.reserve(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    ++local.total;
    TokenizedExample e;
    e.source_index = static_cast<int64_t>(i);
    for (size_t s = 0; s < examples[i].size(); ++s) {
      const Segment& segment = examples[i][s];
      const std::vector<int64_t> ids = tokenizer.encode(segment.text, /*add_special_tokens=*/s == 0 && options.add_bos);
      e.input_ids.insert(e.input_ids.end(), ids.begin(), ids.end());
      e.labels.insert(e.labels.end(), ids.begin(), ids.end());
      if (!segment.trained) std::fill(e.labels.end() - static_cast<std::ptrdiff_t>(ids.size()), e.labels.end(), -100);
    }
    if (options.add_eos) {
      e.input_ids.push_back(*eos);
      e.labels.push_back(!examples[i].empty() && examples[i].back().trained ? *eos : -100);
    }
    const auto length = static_cast<int64_t>(e.input_ids.size());
    local.longest = std::max(local.longest, length);
    if (length > options.max_length) {
      // Cut from the end; an example left with no label that counts (the first never does) is skipped.
      const auto keep = static_cast<std::ptrdiff_t>(options.max_length);
      const bool any_label = std::any_of(e.labels.begin() + 1, e.labels.begin() + keep, [](int64_t l) { return l != -100; });
      if (options.overlong == Overlong::skip || !any_label) {
        ++local.skipped;
        continue;
      }
      e.input_ids.resize(static_cast<size_t>(keep));
      e.labels.resize(static_cast<size_t>(keep));
      ++local.truncated;
    }
    out.push_back(std::move(e));
  }
  if (report != nullptr) *report = local;
  return out;
}

std::vector<TokenizedExample> tokenize_pairs(const std::vector<TextPair>& pairs, const tokenizer::Tokenizer& tokenizer,
                                             const TokenizeOptions& options, TokenizeReport* report) {
  std::vector<std::vector<Segment>> examples;
  examples.reserve(pairs.size());
  for (const auto& p : pairs) examples.push_back({{p.prompt, false}, {p.response, true}});
  return tokenize_segments(examples, tokenizer, options, report);
}

std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int64_t max_length) {
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return examples[a].input_ids.size() > examples[b].input_ids.size();
  });
  // Best fit decreasing: each example (longest first) goes to the fullest sequence it still fits in.
  std::vector<TokenizedExample> packed;
  std::multimap<int64_t, size_t> by_room;  // room left -> sequence
  for (const size_t i : order) {
    const TokenizedExample& e = examples[i];
    const auto length = static_cast<int64_t>(e.input_ids.size());
    RANKTUNE_CHECK(length <= max_length, "cannot pack an example of ", length, " tokens into ", max_length);
    size_t target;
    const auto fit = by_room.lower_bound(length);
    if (fit == by_room.end()) {
      target = packed.size();
      packed.emplace_back();
      packed.back().source_index = -1;
    } else {
      target = fit->second;
      by_room.erase(fit);
    }
    TokenizedExample& p = packed[target];
    p.input_ids.insert(p.input_ids.end(), e.input_ids.begin(), e.input_ids.end());
    p.labels.insert(p.labels.end(), e.labels.begin(), e.labels.end());
    p.labels[p.labels.size() - e.labels.size()] = -100;
    p.packed_lengths.push_back(length);
    by_room.emplace(max_length - static_cast<int64_t>(p.input_ids.size()), target);
  }
  return packed;
}

Batch collate(const std::vector<const TokenizedExample*>& examples, int64_t pad_token_id) {
  RANKTUNE_CHECK(!examples.empty(), "collate needs at least one example");
  size_t longest = 0;
  for (const auto* e : examples) longest = std::max(longest, e->input_ids.size());
  const auto batch = static_cast<int64_t>(examples.size());
  const auto width = static_cast<int64_t>(longest);
  const auto options = at::TensorOptions().dtype(torch::kLong);
  Batch b;
  b.input_ids = at::full({batch, width}, pad_token_id, options);
  b.attention_mask = at::zeros({batch, width}, options);
  b.labels = at::full({batch, width}, -100, options);
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto mask = b.attention_mask.accessor<int64_t, 2>();
  auto labels = b.labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < batch; ++r) {
    const TokenizedExample& e = *examples[static_cast<size_t>(r)];
    int64_t example = 1;  // the number of the example token t belongs to (always 1 unless packed)
    size_t example_end = e.packed_lengths.empty() ? e.input_ids.size() : static_cast<size_t>(e.packed_lengths[0]);
    for (size_t t = 0; t < e.input_ids.size(); ++t) {
      if (t == example_end) example_end += static_cast<size_t>(e.packed_lengths[static_cast<size_t>(example++)]);
      ids[r][static_cast<int64_t>(t)] = e.input_ids[t];
      mask[r][static_cast<int64_t>(t)] = example;
      labels[r][static_cast<int64_t>(t)] = e.labels[t];
      // The loss predicts labels[t] from position t-1, so the first label never counts.
      if (t > 0 && e.labels[t] != -100) ++b.loss_tokens;
    }
    b.tokens += static_cast<int64_t>(e.input_ids.size());
  }
  return b;
}

BatchPlan::BatchPlan(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed, bool group_by_length)
    : lengths_(std::move(lengths)), batch_size_(batch_size), seed_(seed), group_by_length_(group_by_length) {
  RANKTUNE_CHECK(batch_size_ > 0, "batch_size must be positive, got ", batch_size_);
  RANKTUNE_CHECK(!lengths_.empty(), "no training examples (all were skipped or the data is empty)");
}

int64_t BatchPlan::batches_per_epoch() const {
  return (static_cast<int64_t>(lengths_.size()) + batch_size_ - 1) / batch_size_;
}

std::vector<std::vector<int64_t>> BatchPlan::epoch_batches(int64_t epoch) const {
  std::vector<int64_t> order(lengths_.size());
  std::iota(order.begin(), order.end(), 0);
  // One generator per epoch, derived from the seed: the plan needs no state to resume.
  std::mt19937_64 rng(seed_ * 1000003ULL + static_cast<uint64_t>(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  if (group_by_length_) {
    const size_t mega = static_cast<size_t>(batch_size_) * 50;
    for (size_t start = 0; start < order.size(); start += mega) {
      const auto end = order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + mega));
      std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(start), end,
                       [&](int64_t a, int64_t b) { return lengths_[static_cast<size_t>(a)] > lengths_[static_cast<size_t>(b)]; });
    }
  }
  std::vector<std::vector<int64_t>> batches;
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size_)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size_));
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(start), order.begin() + static_cast<std::ptrdiff_t>(end));
  }
  if (group_by_length_) std::shuffle(batches.begin(), batches.end(), rng);
  return batches;
}

}  // namespace ranktune::data
