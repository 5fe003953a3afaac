#include "chat_templates.h"

#include "jinja.h"
#include "jinja_lexer.h"
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <algorithm>

namespace ranktune::tokenizer {

using jinja::Value;

ChatTemplates::ChatTemplates(const TokenizerConfig& config, const std::string& jinja_path)
    : templates_(config.chat_templates),
      origin_(config.source),
      tokens_(config.template_tokens),
      additional_special_tokens_(config.listed_additional_special_tokens) {
  if (!jinja_path.empty()) {
    templates_ = {{"default", io::read_file(jinja_path)}};
    origin_ = jinja_path;
  }
}

std::vector<std::string> ChatTemplates::names() const {
  std::vector<std::string> out;
  for (const auto& entry : templates_) out.push_back(entry.first);
  return out;
}

std::string ChatTemplates::select(const std::string& name_or_template, bool with_tools) const {
  // transformers' get_chat_template: a name of the model's templates, else the text itself.
  auto find = [&](const std::string& name) -> const std::string* {
    for (const auto& entry : templates_) {
      if (entry.first == name) return &entry.second;
    }
    return nullptr;
  };
  if (!name_or_template.empty()) {
    if (templates_.size() > 1 || (templates_.size() == 1 && templates_[0].first != "default")) {
      if (const std::string* text = find(name_or_template)) return *text;
    }
    return name_or_template;
  }
  if (templates_.empty()) {
    throw Error("this tokenizer has no chat template (no chat_template in tokenizer_config.json and no "
                "chat_template.jinja): pass one as chat_template",
                ErrorContext{origin_, "chat_template", -1});
  }
  if (with_tools) {
    if (const std::string* text = find("tool_use")) return *text;
  }
  if (const std::string* text = find("default")) return *text;
  throw Error("this model has several chat templates and none is named \"default\": pass the name of one (" +
                  join(names()) + ") as chat_template",
              ErrorContext{origin_, "chat_template", -1});
}

std::shared_ptr<const jinja::Template> ChatTemplates::compile(const std::string& text) const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  auto& slot = cache_->compiled[text];
  if (!slot) {
    const bool own = std::any_of(templates_.begin(), templates_.end(), [&](const auto& e) { return e.second == text; });
    // Error lines count from the template's first line: in chat_template.jinja they are the file's,
    // in tokenizer_config.json the key says the line is within chat_template.
    ErrorContext where{"chat_template argument", "", -1};
    if (own) where = ErrorContext{origin_, ends_with(origin_, ".jinja") ? "" : "chat_template", -1};
    slot = std::make_shared<const jinja::Template>(text, where);
  }
  return slot;
}

namespace {

Value parse_json_argument(const std::string& text, const char* what) {
  if (text.empty()) return Value::none();
  return Value::from_json(io::parse_json<io::ordered_json>(text, what));
}

// The text of the final message, where continue_final_message cuts: its content, or the text of
// the last part of a content list.
std::string final_message_text(const Value& conversation) {
  if (conversation.items().empty()) throw Error("continue_final_message needs at least one message");
  const Value& last = conversation.items().back();
  if (!last.is_dict()) throw Error("continue_final_message: the final message is not an object");
  const Value* content = last.find("content");
  if (content != nullptr && content->is_list() && !content->items().empty() && content->items().back().is_dict()) {
    content = content->items().back().find("text");
  }
  if (content == nullptr || !content->is_string()) {
    throw Error("continue_final_message: the final message has no text content to continue");
  }
  return content->as_string();
}

}  // namespace

std::string ChatTemplates::apply(const std::string& conversation_json, const ChatTemplateOptions& options) const {
  const Value conversation = Value::from_json(io::parse_json<io::ordered_json>(conversation_json, "conversation"));
  if (!conversation.is_list()) throw Error("the conversation must be a JSON list of messages");
  const Value tools = parse_json_argument(options.tools_json, "tools");
  const Value documents = parse_json_argument(options.documents_json, "documents");
  const Value variables = parse_json_argument(options.variables_json, "chat template variables");
  if (!tools.is_none() && !tools.is_list()) throw Error("tools must be a list of JSON schemas (objects)");
  for (const Value& tool : tools.is_list() ? tools.items() : jinja::List{}) {
    if (!tool.is_dict()) throw Error("tools must be a list of JSON schemas (objects), got " + tool.repr());
  }
  if (!documents.is_none()) {
    if (!documents.is_list()) throw Error("documents should be a list of dicts with 'title' and 'text' keys");
    for (const Value& document : documents.items()) {
      if (!document.is_dict()) throw Error("documents should be a list of dicts with 'title' and 'text' keys");
    }
  }
  if (!variables.is_none() && !variables.is_dict()) throw Error("chat template variables must be a JSON object");
  if (options.continue_final_message && options.add_generation_prompt) {
    throw Error("continue_final_message and add_generation_prompt are not compatible: use continue_final_message "
                "to continue the final message, add_generation_prompt to start a new assistant message");
  }

  // transformers: render(messages=, tools=, documents=, add_generation_prompt=, **{**special_tokens_map, **kwargs}).
  jinja::Dict context = {{Value::string("messages"), conversation},
                         {Value::string("tools"), tools},
                         {Value::string("documents"), documents},
                         {Value::string("add_generation_prompt"), Value::boolean(options.add_generation_prompt)}};
  jinja::Dict extra;
  for (const auto& [key, token] : tokens_) extra.emplace_back(Value::string(key), Value::string(token));
  if (!additional_special_tokens_.empty()) {
    jinja::List list;
    for (const std::string& token : additional_special_tokens_) list.push_back(Value::string(token));
    extra.emplace_back(Value::string("additional_special_tokens"), Value::list(std::move(list)));
  }
  if (variables.is_dict()) {
    for (const auto& entry : variables.entries()) {
      const Value& key = entry.first;  // not a structured binding: lambdas capture it
      const Value& value = entry.second;
      for (size_t i = 0; i < 4; ++i) {
        if (key.as_string() == context[i].first.as_string()) {
          throw Error("chat template variable '" + key.as_string() + "' is an argument of its own: pass it as that");
        }
      }
      auto existing = std::find_if(extra.begin(), extra.end(), [&](const auto& e) { return equal(e.first, key); });
      if (existing != extra.end()) {
        existing->second = value;
      } else {
        extra.emplace_back(key, value);
      }
    }
  }
  context.insert(context.end(), extra.begin(), extra.end());

  const std::string text = select(options.chat_template, !tools.is_none());
  std::string rendered = compile(text)->render(context, options.generation_spans);
  if (options.continue_final_message) {
    // As transformers: cut after the last occurrence of the final message's content, or of its
    // stripped text (templates such as Llama 3.1's trim messages).
    const std::string final_text = final_message_text(conversation);
    size_t at = rendered.rfind(final_text);
    size_t length = final_text.size();
    if (at == std::string::npos) {
      const std::string stripped = jinja::python_strip(final_text, jinja::StripSide::both);
      at = rendered.rfind(stripped);
      length = stripped.size();
    }
    if (at == std::string::npos) {
      throw Error("continue_final_message: the final message's content does not appear in the rendered text");
    }
    rendered.resize(at + length);
    if (options.generation_spans != nullptr) {
      for (auto& [begin, end] : *options.generation_spans) {
        begin = std::min(begin, rendered.size());
        end = std::min(end, rendered.size());
      }
    }
  }
  return rendered;
}

std::string ChatTemplates::apply(const std::vector<ChatMessage>& conversation, const ChatTemplateOptions& options) const {
  io::ordered_json messages = io::ordered_json::array();
  for (const ChatMessage& m : conversation) messages.push_back({{"role", m.role}, {"content", m.content}});
  return apply(messages.dump(), options);
}

}  // namespace ranktune::tokenizer
