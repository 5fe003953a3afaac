#include "ranktune/model/generation.h"

#include "ranktune/core/interrupt.h"

#include "ranktune/core/error.h"
#include "size_limits.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <deque>
#include <limits>

namespace ranktune::model {
namespace {

void validate(const GenerationOptions& o) {
  RANKTUNE_CHECK(o.repetition_penalty() > 0, "repetition_penalty must be > 0, got ", o.repetition_penalty());
  RANKTUNE_CHECK(o.no_repeat_ngram_size() >= 0, "no_repeat_ngram_size must be >= 0, got ", o.no_repeat_ngram_size());
  RANKTUNE_CHECK(o.max_new_tokens() >= 0, "max_new_tokens must be >= 0, got ", o.max_new_tokens());
  RANKTUNE_CHECK(o.temperature() >= 0, "temperature must be >= 0, got ", o.temperature());
  RANKTUNE_CHECK(o.top_k() >= 0, "top_k must be >= 0, got ", o.top_k());
  RANKTUNE_CHECK(o.top_p() > 0 && o.top_p() <= 1, "top_p must be in (0, 1], got ", o.top_p());
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

torch::Tensor choose_next_tokens(const torch::Tensor& logits, const GenerationOptions& options, at::Generator& generator) {
  if (options.temperature() == 0.0) return logits.argmax(-1);
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
  return at::multinomial(scores.softmax(-1), 1, /*replacement=*/false, generator).squeeze(-1);
}

std::vector<Generation> generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options) {
  validate(options);
  RANKTUNE_CHECK(!prompts.empty(), "generate needs at least one prompt");
  int64_t longest = 0;
  for (const auto& p : prompts) {
    RANKTUNE_CHECK(!p.empty(), "generate: a prompt is empty (it needs at least one token, e.g. BOS)");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  }
  check_token_ids(prompts, model.config().vocab_size);
  const int64_t batch = static_cast<int64_t>(prompts.size());
  const int64_t total = longest + options.max_new_tokens();
  const auto long_options = at::TensorOptions().dtype(torch::kLong);

  // Left padding: every prompt ends at the same column, so new tokens line up.
  torch::Tensor input = at::full({batch, longest}, options.pad_token_id(), long_options);
  torch::Tensor mask = at::zeros({batch, total}, long_options);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = prompts[b];
    const int64_t offset = longest - static_cast<int64_t>(p.size());
    input[b].narrow(0, offset, static_cast<int64_t>(p.size())).copy_(at::tensor(p, long_options));
    mask[b].narrow(0, offset, total - offset).fill_(1);
  }
  // Without padding, no mask is needed (and the result is the same as with one).
  const bool padded = std::any_of(prompts.begin(), prompts.end(),
                                  [&](const auto& p) { return static_cast<int64_t>(p.size()) != longest; });

  at::NoGradGuard no_grad;
  EvalScope eval(model);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  KVCache cache = model.make_cache(batch, std::max<int64_t>(total, 1));
  std::vector<Generation> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<std::deque<int64_t>> injected(static_cast<size_t>(batch));  // tokens a tool wants next
  int64_t remaining = batch;

  torch::Tensor step_input = input;
  for (int64_t t = 0; t < options.max_new_tokens() && remaining > 0; ++t) {
    throw_if_interrupted();  // between tokens: Ctrl-C in a notebook or a terminal stops here
    const int64_t seen = longest + t;
    const torch::Tensor step_mask = padded ? mask.narrow(1, 0, seen) : torch::Tensor();
    const CausalLMOutput result = model.forward(step_input, step_mask, {}, &cache);
    torch::Tensor last = result.logits.select(1, result.logits.size(1) - 1);
    if (options.repetition_penalty() != 1.0 || options.no_repeat_ngram_size() > 0) {
      // Per row and without padding, so a batched row is penalised exactly as it would be alone.
      last = last.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
      for (int64_t b = 0; b < batch; ++b) {
        std::vector<int64_t> seen = prompts[b];
        seen.insert(seen.end(), out[b].tokens.begin(), out[b].tokens.end());
        torch::Tensor row = last[b];
        penalize_repetitions(row, seen, options.repetition_penalty());
        ban_repeated_ngrams(row, seen, options.no_repeat_ngram_size());
      }
    }
    const torch::Tensor next = choose_next_tokens(last, options, generator);
    auto next_ids = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      const bool from_tool = !injected[b].empty();
      if (from_tool) {
        next_ids[b] = injected[b].front();
        injected[b].pop_front();
      }
      Generation& g = out[b];
      g.tokens.push_back(next_ids[b]);
      const auto& eos = options.eos_token_ids();
      // Only the model ends its turn: a tool's response may hold end-of-turn ids (Qwen's tool turn).
      if (!from_tool && std::find(eos.begin(), eos.end(), next_ids[b]) != eos.end()) g.finish_reason = "eos";
      else if (options.stop() && options.stop()(g.tokens)) g.finish_reason = "stop";
      if (!g.finish_reason.empty()) {
        done[b] = true;
        --remaining;
      } else if (options.inject() && injected[b].empty()) {
        for (int64_t id : options.inject()(g.tokens)) injected[b].push_back(id);
      }
    }
    step_input = next.masked_fill(at::tensor(std::vector<uint8_t>(done.begin(), done.end())).to(torch::kBool),
                                  options.pad_token_id())
                     .unsqueeze(1);
  }
  for (auto& g : out) {
    if (g.finish_reason.empty()) g.finish_reason = "length";
  }
  return out;
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
