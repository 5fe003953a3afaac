#include "batched_generation.h"

#include "ranktune/core/progress.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <algorithm>

namespace ranktune::eval {

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
