#include "ranktune/train/template_generation.h"

#include "ranktune/prompt/template.h"
#include "ranktune/prompt/tools.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <vector>

namespace ranktune::train {

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

}  // namespace ranktune::train
