#pragma once
// Options of Tokenizer::apply_chat_template: the model's own chat template (tokenizer_config.json's
// `chat_template`, or chat_template.jinja beside it) rendered as transformers'
// apply_chat_template(..., tokenize=False) renders it. docs/chat_templates.md says what Jinja is
// supported.
//
//   ChatTemplateOptions options;
//   options.add_generation_prompt = true;
//   std::string prompt = tok.apply_chat_template({{"system", "Think step by step."}, {"user", q}}, options);
//
// Messages, tools, documents and extra variables cross this API as JSON text (objects keep their
// key order, as Python dicts do), so no JSON library is part of the installed headers.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::tokenizer {

// One turn with text content. Richer messages (tool_calls, content lists) go as JSON.
struct ChatMessage {
  std::string role;
  std::string content;
};

struct ChatTemplateOptions {
  // Ends the text with the header of an assistant turn (the template's add_generation_prompt).
  bool add_generation_prompt = false;
  // Renders, then cuts the text right after the last message's content, so that generation
  // continues that message (transformers' continue_final_message); not with add_generation_prompt.
  bool continue_final_message = false;
  // "" uses the tokenizer's template ("tool_use" when tools are given and the model names one,
  // else "default"); the name of one of the model's templates; or a template's text.
  std::string chat_template;
  // JSON text of a list, or "" for None (templates test `tools is not none`).
  std::string tools_json;
  std::string documents_json;
  // JSON text of an object whose keys become template variables (transformers' **kwargs, e.g.
  // {"date_string": "26 Jul 2024", "enable_thinking": false}); they override the special tokens.
  std::string variables_json;
  // When set, receives the [begin, end) byte ranges of the text that the template's
  // {% generation %} blocks rendered (the assistant's part: transformers'
  // return_assistant_tokens_mask), clipped to the text when continue_final_message cuts it.
  std::vector<std::pair<size_t, size_t>>* generation_spans = nullptr;
};

}  // namespace ranktune::tokenizer
