#include "ranktune/model/generation.h"

#include "ranktune/core/interrupt.h"

#include "ranktune/core/error.h"
#include "size_limits.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <numeric>

namespace ranktune::model {
namespace {

void validate(const GenerationOptions& o) {
  RANKTUNE_CHECK(o.repetition_penalty() > 0, "repetition_penalty must be > 0, got ", o.repetition_penalty());
  RANKTUNE_CHECK(o.no_repeat_ngram_size() >= 0, "no_repeat_ngram_size must be >= 0, got ", o.no_repeat_ngram_size());
  RANKTUNE_CHECK(o.max_new_tokens() >= 0, "max_new_tokens must be >= 0, got ", o.max_new_tokens());
  RANKTUNE_CHECK(o.temperature() >= 0, "temperature must be >= 0, got ", o.temperature());
  RANKTUNE_CHECK(o.top_k() >= 0, "top_k must be >= 0, got ", o.top_k());
  RANKTUNE_CHECK(o.top_p() > 0 && o.top_p() <= 1, "top_p must be in (0, 1], got ", o.top_p());
  RANKTUNE_CHECK(o.num_return_sequences() >= 1, "num_return_sequences must be >= 1, got ", o.num_return_sequences());
}

// Restores a module's training flag on scope exit.
class EvalScope {
 public:
  explicit EvalScope(torch::nn::Module& m) : module_(m), was_training_(m.is_training()) { module_.eval(); }
  ~EvalScope() { module_.train(was_training_); }

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

// Rows that neither ended nor stopped ran out of new tokens.
std::vector<Generation> finish(std::vector<Generation>& out) {
  for (auto& g : out) {
    if (g.finish_reason.empty()) g.finish_reason = "length";
  }
  return std::move(out);
}

}  // namespace

void penalize_repetitions(torch::Tensor& row_logits, const std::vector<int64_t>& seen, double penalty) {
  if (penalty == 1.0 || seen.empty()) return;
  const torch::Tensor ids = at::tensor(seen, at::TensorOptions().dtype(torch::kLong));
  const torch::Tensor scores = row_logits.index_select(0, ids);
  row_logits.index_copy_(0, ids, at::where(scores.lt(0), scores * penalty, scores / penalty));
}

void ban_repeated_ngrams(torch::Tensor& row_logits, const std::vector<int64_t>& seen, int64_t n) {
  const auto length = static_cast<int64_t>(seen.size());
  if (n <= 0 || length < n) return;
  // The last n-1 tokens, and every earlier n-gram that starts with them: its last token is banned.
  const auto prefix = seen.end() - (n - 1);
  const float lowest = -std::numeric_limits<float>::infinity();
  for (int64_t start = 0; start + n <= length; ++start) {
    if (std::equal(prefix, seen.end(), seen.begin() + start)) row_logits[seen[static_cast<size_t>(start + n - 1)]] = lowest;
  }
}

uint64_t row_seed(uint64_t seed, int64_t row) {
  if (row == 0) return seed;
  // splitmix64 of seed + row·φ: nearby seeds and rows give unrelated streams.
  uint64_t z = seed + static_cast<uint64_t>(row) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

torch::Tensor choose_next_tokens(const torch::Tensor& logits, const GenerationOptions& options,
                                 std::vector<at::Generator>& row_generators) {
  if (options.temperature() == 0.0) return logits.argmax(-1);
  RANKTUNE_CHECK(static_cast<int64_t>(row_generators.size()) == logits.size(0), "choose_next_tokens: ",
                 row_generators.size(), " generators for ", logits.size(0), " rows");
  // transformers' order of warpers: temperature, then top-k, then top-p.
  torch::Tensor scores = logits.to(torch::kFloat32) / options.temperature();
  const float lowest = -std::numeric_limits<float>::infinity();
  if (options.top_k() > 0 && options.top_k() < scores.size(-1)) {
    const torch::Tensor kth = std::get<0>(scores.topk(options.top_k(), -1)).narrow(-1, options.top_k() - 1, 1);
    scores = scores.masked_fill(scores.lt(kth), lowest);
  }
  if (options.top_p() < 1.0) {
    auto [sorted, order] = scores.sort(-1, /*descending=*/false);
    const torch::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    torch::Tensor drop = cumulative.le(1.0 - options.top_p());
    drop.narrow(-1, drop.size(-1) - 1, 1).fill_(false);  // always keep the most likely token
    scores = scores.masked_fill(drop.scatter(-1, order, drop), lowest);
  }
  const torch::Tensor probs = scores.softmax(-1);
  torch::Tensor next = at::empty({probs.size(0)}, at::TensorOptions().dtype(torch::kLong));
  auto ids = next.accessor<int64_t, 1>();
  for (int64_t b = 0; b < probs.size(0); ++b) {
    ids[b] = at::multinomial(probs.narrow(0, b, 1), 1, /*replacement=*/false, row_generators[static_cast<size_t>(b)])
                 .item<int64_t>();
  }
  return next;
}

namespace {

// The prompts left-padded into one [prompts, longest] batch, and the padding mask over
// `total` columns (prompt and new tokens).
struct PaddedPrompts {
  torch::Tensor input, mask;
  int64_t longest = 0;
  bool padded = false;  // some prompt is shorter than the longest (else no mask is needed)
};

PaddedPrompts pad_left(const std::vector<std::vector<int64_t>>& prompts, int64_t max_new_tokens, int64_t pad_token_id) {
  PaddedPrompts out;
  for (const auto& p : prompts) out.longest = std::max<int64_t>(out.longest, static_cast<int64_t>(p.size()));
  const int64_t batch = static_cast<int64_t>(prompts.size()), total = out.longest + max_new_tokens;
  const auto long_options = at::TensorOptions().dtype(torch::kLong);
  out.input = at::full({batch, out.longest}, pad_token_id, long_options);
  out.mask = at::zeros({batch, total}, long_options);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t offset = out.longest - static_cast<int64_t>(p.size());
    out.input[b].narrow(0, offset, static_cast<int64_t>(p.size())).copy_(at::tensor(p, long_options));
    out.mask[b].narrow(0, offset, total - offset).fill_(1);
    out.padded = out.padded || offset > 0;
  }
  return out;
}

// A cache of `group` rows per row of `prompt_cache` (row i * group + j a copy of row i) with room
// for `capacity` tokens: one prefill serves `group` samples. Reads the cached tokens through
// KVCache::update with no new tokens (which returns views of everything cached).
KVCache repeat_cache_rows(const CausalLMImpl& model, KVCache& prompt_cache, int64_t group, int64_t capacity) {
  const int64_t rows = prompt_cache.batch_size(), length = prompt_cache.length();
  KVCache out = model.make_cache(rows * group, capacity);
  const torch::Tensor none = at::empty({rows, 1, 0, 1}, at::TensorOptions().dtype(model.dtype()));  // broadcasts
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    const auto [keys, values] = prompt_cache.update(layer, none, none);
    out.update(layer, keys.repeat_interleave(group, 0), values.repeat_interleave(group, 0));
  }
  out.advance(length);
  return out;
}

}  // namespace

std::vector<Generation> generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options) {
  validate(options);
  RANKTUNE_CHECK(!prompts.empty(), "generate needs at least one prompt");
  for (const auto& p : prompts) {
    RANKTUNE_CHECK(!p.empty(), "generate: a prompt is empty (it needs at least one token, e.g. BOS)");
  }
  check_token_ids(prompts, model.config().vocab_size);
  const int64_t group = options.num_return_sequences();
  const int64_t batch = static_cast<int64_t>(prompts.size()) * group;
  const PaddedPrompts padded = pad_left(prompts, options.max_new_tokens(), options.pad_token_id());
  const int64_t longest = padded.longest, total = longest + options.max_new_tokens();
  // Row r continues prompt r / group.
  auto prompt_of = [&](int64_t row) -> const std::vector<int64_t>& { return prompts[static_cast<size_t>(row / group)]; };
  const torch::Tensor mask = group > 1 ? padded.mask.repeat_interleave(group, 0) : padded.mask;

  at::NoGradGuard no_grad;
  EvalScope eval(model);
  std::vector<at::Generator> generators;
  if (options.temperature() > 0) {
    for (int64_t b = 0; b < batch; ++b) generators.push_back(at::make_generator<at::CPUGeneratorImpl>(row_seed(options.seed(), b)));
  }
  std::vector<Generation> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<std::deque<int64_t>> injected(static_cast<size_t>(batch));  // tokens a tool wants next
  int64_t remaining = batch;
  if (options.max_new_tokens() == 0) return finish(out);

  // Prefill, once per prompt: all but the last prompt token only fill the cache (no output head
  // over the prompt); the last one gives the logits of the first new token.
  const auto prompt_mask = [&](int64_t columns) {
    return padded.padded ? padded.mask.narrow(1, 0, columns) : torch::Tensor();
  };
  throw_if_interrupted();
  KVCache cache = model.make_cache(static_cast<int64_t>(prompts.size()), group > 1 ? longest : total);
  if (longest > 1) model.forward(padded.input.narrow(1, 0, longest - 1), prompt_mask(longest - 1), {}, &cache, false);
  torch::Tensor logits = model.forward(padded.input.narrow(1, longest - 1, 1), prompt_mask(longest), {}, &cache).logits;
  if (group > 1) {
    cache = repeat_cache_rows(model, cache, group, total);
    logits = logits.repeat_interleave(group, 0);
  }

  // live[i]: the result row that batch row i decodes. Rows that finished are dropped from the batch
  // (cache, mask, generators) once they are a quarter of it: copying the cache then costs less than
  // the steps it saves.
  std::vector<int64_t> live(static_cast<size_t>(batch));
  std::iota(live.begin(), live.end(), 0);
  torch::Tensor live_mask = mask;
  for (int64_t t = 0;; ++t) {
    torch::Tensor last = logits.select(1, logits.size(1) - 1);
    const auto rows = static_cast<int64_t>(live.size());
    if (options.repetition_penalty() != 1.0 || options.no_repeat_ngram_size() > 0) {
      // Per row and without padding, so a batched row is penalised exactly as it would be alone.
      last = last.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t b = live[static_cast<size_t>(i)];
        std::vector<int64_t> seen = prompt_of(b);
        seen.insert(seen.end(), out[b].tokens.begin(), out[b].tokens.end());
        torch::Tensor row = last[i];
        penalize_repetitions(row, seen, options.repetition_penalty());
        ban_repeated_ngrams(row, seen, options.no_repeat_ngram_size());
      }
    }
    torch::Tensor next = choose_next_tokens(last, options, generators);
    if (!next.is_contiguous()) next = next.contiguous();
    auto next_ids = next.accessor<int64_t, 1>();
    int64_t finished_live = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t b = live[static_cast<size_t>(i)];
      if (done[b]) {
        next_ids[i] = options.pad_token_id();
        ++finished_live;
        continue;
      }
      const bool from_tool = !injected[b].empty();
      if (from_tool) {
        next_ids[i] = injected[b].front();
        injected[b].pop_front();
      }
      Generation& g = out[b];
      g.tokens.push_back(next_ids[i]);
      g.from_tool.push_back(from_tool);
      const auto& eos = options.eos_token_ids();
      // Only the model ends its turn: a tool's response may hold end-of-turn ids (Qwen's tool turn).
      if (!from_tool && std::find(eos.begin(), eos.end(), next_ids[i]) != eos.end()) g.finish_reason = "eos";
      else if (options.stop() && options.stop()(g.tokens)) g.finish_reason = "stop";
      if (!g.finish_reason.empty()) {
        done[b] = true;
        --remaining;
        ++finished_live;
      } else if (options.inject() && injected[b].empty()) {
        for (int64_t id : options.inject()(g.tokens)) injected[b].push_back(id);
      }
    }
    if (t + 1 >= options.max_new_tokens() || remaining == 0) break;
    throw_if_interrupted();  // between tokens: Ctrl-C in a notebook or a terminal stops here
    if (finished_live * 4 >= rows) {
      std::vector<int64_t> keep;
      std::vector<int64_t> kept_rows;
      std::vector<at::Generator> kept_generators;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t b = live[static_cast<size_t>(i)];
        if (done[b]) continue;
        keep.push_back(i);
        kept_rows.push_back(b);
        if (!generators.empty()) kept_generators.push_back(generators[static_cast<size_t>(i)]);
      }
      const torch::Tensor index = at::tensor(keep, at::TensorOptions().dtype(torch::kLong));
      cache.keep_rows(index);
      next = next.index_select(0, index);
      if (padded.padded) live_mask = live_mask.index_select(0, index.to(live_mask.device()));
      live = std::move(kept_rows);
      generators = std::move(kept_generators);
    }
    const int64_t seen = longest + t + 1;
    const torch::Tensor step_mask = padded.padded ? live_mask.narrow(1, 0, seen) : torch::Tensor();
    logits = model.forward(next.unsqueeze(1), step_mask, {}, &cache).logits;
  }
  return finish(out);
}

StopCondition stop_at_strings(std::vector<std::string> stop_strings,
                              std::function<std::string(const std::vector<int64_t>&)> decode) {
  return [stops = std::move(stop_strings), decode = std::move(decode)](const std::vector<int64_t>& generated) {
    if (stops.empty()) return false;
    const std::string text = decode(generated);
    return std::any_of(stops.begin(), stops.end(), [&](const std::string& s) { return text.find(s) != std::string::npos; });
  };
}

}  // namespace ranktune::model
