#include "batched_generation.h"

#include "ranktune/core/progress.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/prompt/template.h"
#include "ranktune/prompt/tools.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <algorithm>

namespace ranktune::eval {

model::GenerationOptions template_generation_options(const tokenizer::Tokenizer& tokenizer,
                                                     const prompt::PromptTemplate& tpl, int64_t max_new_tokens,
                                                     bool calculator, std::shared_ptr<const prompt::ToolRegistry> tools) {
  std::vector<int64_t> eos;
  if (tokenizer.eos_token_id()) eos.push_back(*tokenizer.eos_token_id());
  if (!tpl.end_of_turn().empty()) {
    if (auto id = tokenizer.token_to_id(tpl.end_of_turn())) eos.push_back(*id);
  }
  const tokenizer::Tokenizer tok = tokenizer;
  auto decode = [tok](const std::vector<int64_t>& ids) { return tok.decode(ids, /*skip_special_tokens=*/true); };
  model::GenerationOptions options = model::GenerationOptions()
                                         .max_new_tokens(max_new_tokens)
                                         .eos_token_ids(eos)
                                         .pad_token_id(tokenizer.pad_token_id().value_or(eos.empty() ? 0 : eos[0]))
                                         .stop(model::stop_at_strings(tpl.stop(), decode));
  if (auto hooks = prompt::template_tool_hooks(tpl, std::move(tools), tokenizer, {}, calculator)) {
    options.inject(hooks->inject).stop(hooks->stop);
  }
  return options;
}

std::vector<std::vector<int64_t>> template_prompt_ids(const tokenizer::Tokenizer& tokenizer,
                                                      const prompt::PromptTemplate& tpl,
                                                      const std::vector<std::string>& questions) {
  std::vector<std::vector<int64_t>> out;
  out.reserve(questions.size());
  for (const auto& q : questions) out.push_back(tokenizer.encode(tpl.render_prompt(q), !tpl.text_has_bos()));
  return out;
}

std::vector<std::vector<int64_t>> generate_all(model::CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                                               int64_t copies, const model::GenerationOptions& options,
                                               int64_t batch_size, ProgressBar* bar, int64_t& generated_tokens) {
  const size_t prompts_per_batch = static_cast<size_t>(std::max<int64_t>(1, batch_size / copies));
  std::vector<std::vector<int64_t>> out;
  for (size_t start = 0; start < prompts.size(); start += prompts_per_batch) {
    const size_t end = std::min(prompts.size(), start + prompts_per_batch);
    const std::vector<std::vector<int64_t>> batch(prompts.begin() + static_cast<std::ptrdiff_t>(start),
                                                  prompts.begin() + static_cast<std::ptrdiff_t>(end));
    // A distinct seed per batch (its first row's index) keeps samples independent across batches
    // and reproducible.
    model::GenerationOptions o = options;
    o.seed(options.seed() + start * static_cast<size_t>(copies)).num_return_sequences(copies);
    for (auto& g : model::generate(model, batch, o)) {
      generated_tokens += static_cast<int64_t>(g.tokens.size());
      out.push_back(std::move(g.tokens));
    }
    if (bar != nullptr) bar->update(static_cast<int64_t>(end * static_cast<size_t>(copies)));
  }
  return out;
}

}  // namespace ranktune::eval
