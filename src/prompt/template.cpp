#include "ranktune/prompt/template.h"

#include "pattern.h"
#include "template_retrieval.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/yaml.h"
#include "ranktune/prompt/tools.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

namespace ranktune::prompt {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& template_keys() {
  static const std::vector<std::string> keys = {"name",   "description", "format",         "system",
                                                "prompt", "response",    "few_shot",       "stop",
                                                "answer_pattern", "format_pattern", "exemplars", "context",
                                                "tools"};
  return keys;
}

const std::vector<std::string>& placeholder_names() {
  static const std::vector<std::string> names = {"question", "rationale", "answer", "context"};
  return names;
}

bool is_identifier_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

// A `{name}` at `pos` (name an identifier): returns the name and sets `length`, else "".
std::string placeholder_at(const std::string& text, size_t pos, size_t* length) {
  if (text[pos] != '{' || pos + 1 >= text.size() || !is_identifier_char(text[pos + 1], true)) return "";
  size_t end = pos + 1;
  while (end < text.size() && is_identifier_char(text[end], false)) ++end;
  if (end >= text.size() || text[end] != '}') return "";
  *length = end + 1 - pos;
  return text.substr(pos + 1, end - pos - 1);
}

bool is_placeholder(const std::string& name) {
  const auto& names = placeholder_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

struct Value {
  const char* name;
  const std::string* text;
};

// Single pass: {name} → its value for the names in `values`; {{name}} → a literal {name} for a
// placeholder name; every other brace is literal text. Values are never scanned again, so a
// question containing "{answer}" stays as it is.
std::string substitute(const std::string& text, std::initializer_list<Value> values) {
  std::string out;
  out.reserve(text.size() + 256);
  size_t i = 0;
  while (i < text.size()) {
    size_t length = 0;
    if (text[i] == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      const std::string name = placeholder_at(text, i + 1, &length);
      if (!name.empty() && is_placeholder(name) && i + 1 + length < text.size() && text[i + 1 + length] == '}') {
        out += "{" + name + "}";
        i += length + 2;
        continue;
      }
    }
    const std::string name = placeholder_at(text, i, &length);
    bool replaced = false;
    for (const auto& v : values) {
      if (!name.empty() && name == v.name) {
        out += *v.text;
        i += length;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

// Checks that `text` (the value of `key`) holds each of `required` exactly once and no other
// placeholder: a placeholder of another field, or a near miss like {questoin}, is an error.
// Near misses are only reported where placeholders are substituted (`near_misses`).
void check_placeholders(const std::string& text, const std::string& key, const std::vector<std::string>& required,
                        bool near_misses, const io::YamlFields& fields) {
  std::map<std::string, int> counts;
  for (size_t i = 0; i < text.size(); ++i) {
    size_t length = 0;
    if (text[i] == '{' && i + 1 < text.size() && text[i + 1] == '{') {  // {{name}} is an escape
      const std::string name = placeholder_at(text, i + 1, &length);
      if (!name.empty() && is_placeholder(name) && i + 1 + length < text.size() && text[i + 1 + length] == '}') {
        i += length + 1;
        continue;
      }
    }
    const std::string name = placeholder_at(text, i, &length);
    if (name.empty()) continue;
    if (std::find(required.begin(), required.end(), name) != required.end()) {
      ++counts[name];
    } else if (is_placeholder(name)) {
      fields.fail(key, c10::str("{", name, "} cannot be used here; '", key, "' takes ",
                                required.empty() ? std::string("no placeholders") : "{" + join(required, "}, {") + "}",
                                " (write {{", name, "}} for the literal text)"));
    } else if (near_misses) {
      const std::string hint = nearest(name, placeholder_names());
      if (!hint.empty()) {
        fields.fail(key, c10::str("unknown placeholder {", name, "} (did you mean {", hint, "}?)"));
      }
    }
    i += length - 1;
  }
  for (const auto& name : required) {
    const int n = counts.count(name) != 0 ? counts.at(name) : 0;
    if (n == 0) fields.fail(key, c10::str("must contain the placeholder {", name, "}"));
    if (n > 1) fields.fail(key, c10::str("the placeholder {", name, "} appears ", n, " times; it must appear once"));
  }
}

// Compiles `pattern` (the value of `key`), with the error in the template's context.
Regex compile_pattern(const std::string& pattern, const std::string& key, const io::YamlFields& fields) {
  try {
    return Regex(pattern);
  } catch (const Error& e) {
    fields.fail(key, e.message());
  }
}

ChatFormat parse_format(const std::string& text, io::YamlFields& fields) {
  if (text == "plain") return ChatFormat::plain;
  if (text == "chatml") return ChatFormat::chatml;
  if (text == "llama3") return ChatFormat::llama3;
  if (text == "chat") return ChatFormat::chat;
  const std::vector<std::string> valid = {"plain", "chatml", "llama3", "chat"};
  const std::string hint = nearest(text, valid);
  fields.fail("format", c10::str("unknown format '", text, "'", hint.empty() ? "" : " (did you mean '" + hint + "'?)",
                                 "; expected one of: ", join(valid)));
}

std::string stem_of(const std::string& source) {
  const fs::path p(source);
  return p.has_stem() ? p.stem().string() : source;
}

// The directory of the shared library this code is in (the installed share dir is found from it).
std::string library_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&library_directory), &info) == 0 || info.dli_fname == nullptr) return "";
  std::error_code ec;
  const fs::path lib = fs::weakly_canonical(fs::path(info.dli_fname), ec);
  return ec ? "" : lib.parent_path().string();
}

}  // namespace

std::string to_string(ChatFormat format) {
  switch (format) {
    case ChatFormat::plain: return "plain";
    case ChatFormat::chatml: return "chatml";
    case ChatFormat::llama3: return "llama3";
    case ChatFormat::chat: return "chat";
  }
  return "plain";
}

// ---- parsing ---------------------------------------------------------------------------------

PromptTemplate PromptTemplate::parse(const std::string& yaml_text, const std::string& source) {
  const YAML::Node root = io::parse_yaml(yaml_text, source);
  if (!root.IsDefined() || root.IsNull()) throw Error("empty template: expected a mapping of template keys", ErrorContext{source, "", -1});
  io::YamlFields fields(root, source);
  fields.reject_unknown(template_keys());  // first, so a misspelt key is named as such

  PromptTemplate t;
  t.source_ = source;
  t.name_ = fields.has_value("name") ? fields.get_string("name") : stem_of(source);
  if (t.name_.empty()) fields.fail("name", "must not be empty");
  if (fields.has_value("description")) t.description_ = fields.get_string("description");
  if (fields.has_value("format")) t.format_ = parse_format(fields.get_string("format"), fields);
  if (fields.has_value("system")) {
    const std::string system = fields.get_string("system");
    check_placeholders(system, "system", {}, /*near_misses=*/false, fields);
    t.system_ = substitute(system, {});  // turns {{question}} into {question}
  }

  // A relative corpus path is relative to the template file.
  const std::string base_dir = fs::path(source).parent_path().string();
  if (fields.has_value("exemplars")) t.retrieved_exemplars_ = load_retrieved_exemplars(fields.get_map("exemplars"), base_dir);
  if (fields.has_value("context")) t.retrieved_context_ = load_retrieved_context(fields.get_map("context"), base_dir);
  t.prompt_ = fields.get_string("prompt");
  if (!t.retrieved_context_ && t.prompt_.find("{context}") != std::string::npos) {
    fields.fail("prompt", "{context} needs the template key 'context' (the corpus its documents are retrieved from)");
  }
  check_placeholders(t.prompt_, "prompt", t.retrieved_context_ ? std::vector<std::string>{"question", "context"}
                                                                 : std::vector<std::string>{"question"},
                     /*near_misses=*/true, fields);
  t.response_ = fields.get_string("response");
  check_placeholders(t.response_, "response", {"rationale", "answer"}, /*near_misses=*/true, fields);

  if (fields.has_value("few_shot")) {
    for (io::YamlFields& item : fields.get_map_list("few_shot")) {
      item.reject_unknown({"question", "rationale", "answer"});
      FewShotExample ex{item.get_string("question"), item.get_string("rationale"), item.get_string("answer")};
      t.few_shot_.push_back(std::move(ex));
    }
  }

  if (fields.has_value("stop")) {
    t.stop_ = fields.get_string_list("stop");
    for (const auto& s : t.stop_) {
      if (s.empty()) fields.fail("stop", "stop strings must not be empty");
    }
  }
  const std::string eot = t.end_of_turn();
  if (!eot.empty() && std::find(t.stop_.begin(), t.stop_.end(), eot) == t.stop_.end()) t.stop_.push_back(eot);

  t.answer_pattern_ = fields.get_string("answer_pattern");
  const Regex answer = compile_pattern(t.answer_pattern_, "answer_pattern", fields);
  if (answer.capture_count() != 1) {
    fields.fail("answer_pattern", c10::str("must have exactly one capture group (the answer), found ",
                                           answer.capture_count(), "; use (?:...) for other groups"));
  }
  if (fields.has_value("format_pattern")) {
    t.format_pattern_ = fields.get_string("format_pattern");
    compile_pattern(t.format_pattern_, "format_pattern", fields);
  }
  if (fields.has_value("tools")) {  // the tool-call syntax (tools.h)
    io::YamlFields tools = fields.get_map("tools");
    tools.reject_unknown({"syntax", "response"});
    t.tool_syntax_ = tools.get_string("syntax");
    try {
      parse_tool_syntax(t.tool_syntax_);
    } catch (const Error& e) {
      tools.fail("syntax", e.message());
    }
    if (tools.has_value("response")) {
      t.tool_response_ = tools.get_string("response");
      if (t.tool_response_.find("{result}") == std::string::npos) tools.fail("response", "must contain {result}");
    }
  }
  return t;
}

// ---- rendering -------------------------------------------------------------------------------

std::string PromptTemplate::end_of_turn() const {
  switch (format_) {
    case ChatFormat::plain: return "";
    case ChatFormat::chatml: return "<|im_end|>";
    case ChatFormat::llama3: return "<|eot_id|>";
    case ChatFormat::chat: return chat_end_of_turn_;
  }
  return "";
}

namespace {

// Marks a message whose rendering is looked for in the template's output; no template changes it.
const char* const kSentinel = "\x01ranktune-sentinel\x01";

}  // namespace

std::vector<FewShotExample> PromptTemplate::exemplars_for(const std::string& question) const {
  return retrieved_exemplars_ ? retrieved_exemplars_->for_question(question) : few_shot_;
}

std::string PromptTemplate::context_for(const std::string& question) const {
  return retrieved_context_ ? retrieved_context_->for_question(question) : "";
}

PromptTemplate PromptTemplate::with_fixed_exemplars() const {
  PromptTemplate t = *this;
  t.retrieved_exemplars_.reset();
  return t;
}

int64_t PromptTemplate::shots() const {
  return retrieved_exemplars_ ? retrieved_exemplars_->k() : static_cast<int64_t>(few_shot_.size());
}

std::string PromptTemplate::user_text(const std::string& question) const {
  if (!retrieved_context_) return substitute(prompt_, {{"question", &question}});
  const std::string context = retrieved_context_->for_question(question);
  return substitute(prompt_, {{"question", &question}, {"context", &context}});
}

std::vector<tokenizer::ChatMessage> PromptTemplate::messages(const std::string& question) const {
  std::vector<tokenizer::ChatMessage> out;
  if (!system_.empty()) out.push_back({"system", system_});
  for (const auto& ex : exemplars_for(question)) {
    out.push_back({"user", user_text(ex.question)});
    out.push_back({"assistant", substitute(response_, {{"rationale", &ex.rationale}, {"answer", &ex.answer}})});
  }
  out.push_back({"user", user_text(question)});
  return out;
}

void PromptTemplate::use_tokenizer(const tokenizer::Tokenizer& tok) {
  if (format_ != ChatFormat::chat) return;
  chat_tokenizer_ = tok;
  // The end-of-turn marker is what the template writes after an assistant message's text (in the
  // plainest conversation, one user turn and the answer).
  const std::string completed = tok.apply_chat_template({{"user", "?"}, {"assistant", kSentinel}});
  const size_t at = completed.rfind(kSentinel);
  chat_end_of_turn_ = at == std::string::npos ? "" : trim(completed.substr(at + std::string(kSentinel).size()));
  if (!chat_end_of_turn_.empty() && std::find(stop_.begin(), stop_.end(), chat_end_of_turn_) == stop_.end()) {
    stop_.push_back(chat_end_of_turn_);
  }
}

std::string PromptTemplate::render_chat(const std::vector<tokenizer::ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  std::string out;
  switch (format_) {
    case ChatFormat::plain: {
      std::vector<std::string> blocks;
      for (const auto& m : messages) blocks.push_back(m.content);
      out = join(blocks, "\n\n");
      if (add_generation_prompt && !messages.empty()) out += "\n\n";
      return out;
    }
    case ChatFormat::chatml:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return add_generation_prompt ? out + "<|im_start|>assistant\n" : out;
    case ChatFormat::llama3:
      out = "<|begin_of_text|>";
      for (const auto& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      return add_generation_prompt ? out + "<|start_header_id|>assistant<|end_header_id|>\n\n" : out;
    case ChatFormat::chat: {
      RANKTUNE_CHECK_CTX(chat_tokenizer_.has_value(), (ErrorContext{source_, "format", -1}),
                         "format: chat renders through the model's chat template: call use_tokenizer(tokenizer) first");
      tokenizer::ChatTemplateOptions options;
      options.add_generation_prompt = add_generation_prompt;
      return chat_tokenizer_->apply_chat_template(messages, options);
    }
  }
  return out;
}

std::string PromptTemplate::render_prompt(const std::string& question) const {
  if (format_ == ChatFormat::plain) {
    // Each exemplar is one block: its prompt runs straight into its response.
    std::vector<std::string> blocks;
    if (!system_.empty()) blocks.push_back(system_);
    for (const auto& ex : exemplars_for(question)) {
      blocks.push_back(user_text(ex.question) +
                       substitute(response_, {{"rationale", &ex.rationale}, {"answer", &ex.answer}}));
    }
    blocks.push_back(user_text(question));
    return join(blocks, "\n\n");
  }
  return render_chat(messages(question), /*add_generation_prompt=*/true);
}

std::string PromptTemplate::render_response(const std::string& rationale, const std::string& answer) const {
  const std::string response = substitute(response_, {{"rationale", &rationale}, {"answer", &answer}});
  if (format_ != ChatFormat::chat) return response + end_of_turn();
  // The text the chat template adds for the assistant's message: the conversation with the
  // answer, less the prompt (with a placeholder question; an assistant turn does not depend on it).
  const std::string prompt = render_prompt(kSentinel);
  std::vector<tokenizer::ChatMessage> conversation = messages(kSentinel);
  conversation.push_back({"assistant", response});
  const std::string full = chat_tokenizer_->apply_chat_template(conversation);
  RANKTUNE_CHECK_CTX(starts_with(full, prompt), (ErrorContext{source_, "format", -1}),
                     "the model's chat template renders the conversation differently when an answer follows "
                     "(its prompt is not a prefix of the whole): it cannot be split into prompt and response");
  return full.substr(prompt.size());
}

// ---- lookup ----------------------------------------------------------------------------------

std::vector<std::string> template_search_path() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RANKTUNE_TEMPLATE_PATH")) {
    const std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t colon = std::min(list.find(':', start), list.size());
      if (colon > start) candidates.push_back(list.substr(start, colon - start));
      start = colon + 1;
    }
  }
#ifdef RANKTUNE_TEMPLATE_DIR
  candidates.push_back(RANKTUNE_TEMPLATE_DIR);
#endif
#ifdef RANKTUNE_TEMPLATE_INSTALL_DIR
  candidates.push_back(RANKTUNE_TEMPLATE_INSTALL_DIR);
#endif
  // <prefix>/share/ranktune/templates beside <prefix>/lib[/<arch>]/libranktune.so, so that a
  // relocated install still finds its templates.
  const std::string lib = library_directory();
  if (!lib.empty()) {
    fs::path up(lib);
    for (int level = 0; level < 3 && up.has_parent_path(); ++level) {
      up = up.parent_path();
      candidates.push_back((up / "share" / "ranktune" / "templates").string());
    }
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& dir : candidates) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    const std::string key = fs::weakly_canonical(dir, ec).string();
    if (seen.insert(ec ? dir : key).second) out.push_back(dir);
  }
  return out;
}

std::vector<std::string> available_templates() {
  std::set<std::string> names;
  for (const auto& dir : template_search_path()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const fs::path& p = entry.path();
      if (entry.is_regular_file(ec) && (p.extension() == ".yaml" || p.extension() == ".yml")) {
        names.insert(p.stem().string());
      }
    }
  }
  return {names.begin(), names.end()};
}

PromptTemplate PromptTemplate::load(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos || ends_with(name_or_path, ".yaml") ||
                       ends_with(name_or_path, ".yml");
  if (is_path) return parse(io::read_file(name_or_path), name_or_path);
  if (name_or_path.empty()) throw Error("empty template name", ErrorContext{"", "template", -1});

  const std::vector<std::string> dirs = template_search_path();
  for (const auto& dir : dirs) {
    for (const char* ext : {".yaml", ".yml"}) {
      const fs::path p = fs::path(dir) / (name_or_path + ext);
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) continue;
      PromptTemplate t = parse(io::read_file(p.string()), p.string());
      if (t.name() != name_or_path) {
        log_warning(c10::str(p.string(), ": template file '", name_or_path, "' declares name '", t.name(), "'"));
      }
      return t;
    }
  }
  const std::vector<std::string> names = available_templates();
  const std::string hint = nearest(name_or_path, names);
  throw Error(c10::str("unknown template", hint.empty() ? "" : " (did you mean '" + hint + "'?)", "; available: ",
                       names.empty() ? std::string("none") : join(names), "; searched: ",
                       dirs.empty() ? std::string("no template directories (set RANKTUNE_TEMPLATE_PATH)") : join(dirs)),
              ErrorContext{"", name_or_path, -1});
}

}  // namespace ranktune::prompt
