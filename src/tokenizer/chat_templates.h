#pragma once
// A tokenizer's chat templates and what transformers passes them: the template chosen by name (or
// given), the conversation, tools, documents, add_generation_prompt, the special tokens as strings
// and the caller's extra variables; continue_final_message cuts the rendered text as transformers
// does. Compiled templates are cached (rendering many conversations parses once).

#include "ranktune/tokenizer/chat_template.h"
#include "tokenizer_config.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::tokenizer {

namespace jinja {
class Template;
}

class ChatTemplates {
 public:
  ChatTemplates() = default;
  // `jinja_path`: chat_template.jinja beside the tokenizer ("" when absent); it replaces the
  // config's templates, as in transformers.
  ChatTemplates(const TokenizerConfig& config, const std::string& jinja_path);

  std::vector<std::string> names() const;
  std::string select(const std::string& name_or_template, bool with_tools) const;
  std::string apply(const std::string& conversation_json, const ChatTemplateOptions& options) const;
  std::string apply(const std::vector<ChatMessage>& conversation, const ChatTemplateOptions& options) const;

 private:
  struct Cache {
    std::mutex mutex;
    std::map<std::string, std::shared_ptr<const jinja::Template>> compiled;
  };
  std::shared_ptr<const jinja::Template> compile(const std::string& text) const;

  std::vector<std::pair<std::string, std::string>> templates_;  // name -> text
  std::string origin_;                                          // the file they came from
  std::vector<std::pair<std::string, std::string>> tokens_;     // bos_token -> "<s>", ...
  std::vector<std::string> additional_special_tokens_;
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace ranktune::tokenizer
