#include "ranktune/prompt/reward.h"

#include "pattern.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/core/utf8.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/prompt/template.h"

#include <mutex>

namespace ranktune::prompt {

double accuracy_reward(const std::string& completion, const std::string& gold, const PromptTemplate& tmpl,
                       AnswerMode mode) {
  const Extraction e = extract(completion, tmpl);
  const std::optional<std::string>& predicted = mode == AnswerMode::strict ? e.strict : e.flexible;
  return predicted && answers_match(*predicted, gold) ? 1.0 : 0.0;
}

double format_reward(const std::string& completion, const PromptTemplate& tmpl) {
  if (tmpl.format_pattern().empty()) return extract(completion, tmpl).strict ? 1.0 : 0.0;
  const std::string text = trim(utf8_lossy(cut_at_stop(completion, tmpl.stop())));
  try {
    return detail::cached_pattern(tmpl.format_pattern())->full_match(text) ? 1.0 : 0.0;
  } catch (const Error& e) {  // PCRE2 gave up on this text (match or stack limits): not the format
    static std::once_flag warned;
    std::call_once(warned, [&] { log_warning(std::string(e.what()) + "; format reward 0"); });
    return 0.0;
  }
}

}  // namespace ranktune::prompt
