#include "ranktune/prompt/tools.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/json.h"
#include "ranktune/prompt/calculator.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <algorithm>

namespace ranktune::prompt {
namespace {

const std::string kCallOpen = "<tool_call>";
const std::string kCallClose = "</tool_call>";

// Qwen2.5's chat template: the assistant's turn ends after the call, the result comes back in a
// user turn inside <tool_response>, then the assistant's turn resumes (../shared/chat_templates).
const char* const kChatmlResponse =
    "<|im_end|>\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
const char* const kPlainResponse = "\n<tool_response>\n{result}\n</tool_response>\n";
const char* const kCalculatorResponse = "{result}>>";

std::string error_result(const std::string& message) { return io::ordered_json{{"error", message}}.dump(); }

size_t count_occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// The response turn a format: chat template renders around a `tool` message, with {result} for
// its content: the text after an assistant message up to the next assistant header.
std::string chat_tool_response(const PromptTemplate& tmpl) {
  const std::string call = "\x01ranktune-call\x01", result = "\x01ranktune-result\x01";
  const std::string text = tmpl.render_chat({{"user", "?"}, {"assistant", call}, {"tool", result}}, true);
  const size_t at_call = text.find(call);
  const size_t at_result = at_call == std::string::npos ? at_call : text.find(result, at_call + call.size());
  RANKTUNE_CHECK_CTX(at_result != std::string::npos, (ErrorContext{tmpl.source(), "tools.response", -1}),
                     "the model's chat template does not render a `tool` message after an assistant message; "
                     "set tools.response (the text inserted after a call, with {result})");
  const size_t after_call = at_call + call.size();
  return text.substr(after_call, at_result - after_call) + "{result}" + text.substr(at_result + result.size());
}

}  // namespace

// ---- registry --------------------------------------------------------------------------------

ToolRegistry ToolRegistry::with_builtins() {
  ToolRegistry r;
  r.add("calculator", [](const std::string& arguments) {
    const io::ordered_json args = io::parse_json(arguments, "calculator arguments");
    RANKTUNE_CHECK(args.is_object() && args.contains("expression") && args.at("expression").is_string(),
                   "calculator takes {\"expression\": \"...\"}");
    const auto value = evaluate_arithmetic(args.at("expression").get<std::string>());
    RANKTUNE_CHECK(value.has_value(), "not an arithmetic expression the calculator evaluates: ",
                   args.at("expression").get<std::string>());
    return format_calculator_result(*value);
  });
  return r;
}

void ToolRegistry::add(const std::string& name, ToolFunction function) {
  RANKTUNE_CHECK(!name.empty(), "a tool needs a name");
  RANKTUNE_CHECK(function != nullptr, "tool '", name, "' has no function");
  tools_[name] = std::move(function);
}

std::vector<std::string> ToolRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, fn] : tools_) out.push_back(name);
  return out;
}

ToolResult ToolRegistry::call(const std::string& name, const std::string& arguments_json) const {
  const auto it = tools_.find(name);
  if (it == tools_.end()) {
    return {false, error_result("unknown tool '" + name + "'; available: " + (tools_.empty() ? "none" : join(names())))};
  }
  try {
    return {true, it->second(arguments_json)};
  } catch (const Error& e) {
    return {false, error_result(e.message())};
  } catch (const std::exception& e) {
    return {false, error_result(e.what())};
  }
}

ToolSyntax parse_tool_syntax(const std::string& name) {
  if (name == "calculator") return ToolSyntax::calculator;
  if (name == "json") return ToolSyntax::json;
  throw Error("unknown tool syntax '" + name + "'; expected calculator or json");
}

ToolCall parse_json_tool_call(const std::string& body) {
  ToolCall call;
  io::ordered_json j;
  try {
    j = io::ordered_json::parse(body);
  } catch (const std::exception& e) {
    call.error = "malformed tool call: not JSON (" + io::json_exception_message(e) + ")";
    return call;
  }
  if (!j.is_object() || !j.contains("name") || !j.at("name").is_string() || j.at("name").get<std::string>().empty()) {
    call.error = "malformed tool call: expected {\"name\": \"...\", \"arguments\": {...}}";
    return call;
  }
  call.name = j.at("name").get<std::string>();
  io::ordered_json args = j.contains("arguments") ? j.at("arguments") : io::ordered_json::object();
  if (args.is_string()) {  // some models write the arguments object as a string
    try {
      args = io::ordered_json::parse(args.get<std::string>());
    } catch (const std::exception&) {
      args = nullptr;
    }
  }
  if (args.is_null() && !j.contains("arguments")) args = io::ordered_json::object();
  if (!args.is_object()) {
    call.error = "malformed tool call: 'arguments' of '" + call.name + "' is not a JSON object";
    return call;
  }
  call.arguments_json = args.dump();
  return call;
}

// ---- answering calls -------------------------------------------------------------------------

ToolUse::ToolUse(ToolSyntax syntax, std::string response, std::shared_ptr<const ToolRegistry> registry, ToolLimits limits)
    : syntax_(syntax), response_(std::move(response)), registry_(std::move(registry)), limits_(limits) {
  RANKTUNE_CHECK(registry_ != nullptr, "tool use needs a tool registry");
  RANKTUNE_CHECK(response_.find("{result}") != std::string::npos, "a tool response must contain {result}, got '",
                 response_, "'");
  RANKTUNE_CHECK(limits_.max_calls >= 0, "max_calls must be >= 0, got ", limits_.max_calls);
  RANKTUNE_CHECK(limits_.max_result_chars > 0, "max_result_chars must be > 0, got ", limits_.max_result_chars);
}

std::optional<ToolUse> ToolUse::for_template(const PromptTemplate& tmpl, std::shared_ptr<const ToolRegistry> registry,
                                             ToolLimits limits, bool calculator_by_default) {
  if (tmpl.tool_syntax().empty()) {
    if (!calculator_by_default) return std::nullopt;
    return ToolUse(ToolSyntax::calculator, kCalculatorResponse, std::move(registry), limits);
  }
  const ToolSyntax syntax = parse_tool_syntax(tmpl.tool_syntax());
  std::string response = tmpl.tool_response();
  if (response.empty()) {
    if (syntax == ToolSyntax::calculator) response = kCalculatorResponse;
    else if (tmpl.format() == ChatFormat::chat) response = chat_tool_response(tmpl);
    else if (tmpl.format() == ChatFormat::chatml) response = kChatmlResponse;
    else response = kPlainResponse;
  }
  return ToolUse(syntax, std::move(response), std::move(registry), limits);
}

std::string ToolUse::fill_response(std::string result) const {
  if (static_cast<int64_t>(result.size()) > limits_.max_result_chars) {
    size_t cut = static_cast<size_t>(limits_.max_result_chars);
    while (cut > 0 && (static_cast<unsigned char>(result[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
    result = result.substr(0, cut) + " [truncated]";
  }
  const size_t at = response_.find("{result}");
  return response_.substr(0, at) + result + response_.substr(at + 8);
}

std::optional<std::string> ToolUse::respond(const std::string& text) const {
  if (syntax_ == ToolSyntax::calculator) {
    const auto expression = pending_calculator_expression(text);
    if (!expression) return std::nullopt;
    if (static_cast<int64_t>(count_occurrences(text, "<<")) > limits_.max_calls) return std::nullopt;
    const ToolResult result = registry_->call("calculator", io::ordered_json{{"expression", *expression}}.dump());
    if (!result.ok) return std::nullopt;  // GSM8K has no error form: the model writes the result itself
    return fill_response(result.text);
  }
  if (!ends_with(text, kCallClose)) return std::nullopt;
  const size_t close = text.size() - kCallClose.size();
  if (static_cast<int64_t>(count_occurrences(text, kCallClose)) > limits_.max_calls) {
    return fill_response(error_result("tool call limit reached: at most " + std::to_string(limits_.max_calls) +
                                      " calls per completion"));
  }
  const size_t open = text.rfind(kCallOpen, close);
  const size_t previous_close = close == 0 ? std::string::npos : text.rfind(kCallClose, close - 1);
  if (open == std::string::npos || (previous_close != std::string::npos && previous_close > open)) {
    return fill_response(error_result("malformed tool call: </tool_call> without <tool_call>"));
  }
  const ToolCall call = parse_json_tool_call(text.substr(open + kCallOpen.size(), close - open - kCallOpen.size()));
  if (!call.error.empty()) return fill_response(error_result(call.error));
  return fill_response(registry_->call(call.name, call.arguments_json).text);
}

std::string ToolUse::without_responses(const std::string& text) const {
  if (syntax_ == ToolSyntax::calculator) return text;  // results are numbers
  const size_t at = response_.find("{result}");
  const std::string head = response_.substr(0, at), tail = response_.substr(at + 8);
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t close = text.find(kCallClose, pos);
    if (close == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    const size_t end = close + kCallClose.size();
    out += text.substr(pos, end - pos);
    pos = end;
    const std::string_view rest = std::string_view(text).substr(end);
    const bool inserted = rest.substr(0, head.size()) == head || head.compare(0, rest.size(), rest) == 0;
    if (!inserted) continue;
    if (tail.empty()) {
      pos = std::min(text.size(), end + head.size());
      continue;
    }
    const size_t found = rest.size() > head.size() ? text.find(tail, end + head.size()) : std::string::npos;
    pos = found == std::string::npos ? text.size() : found + tail.size();  // still being inserted: all of it
  }
  return out;
}

ToolHooks tool_generation_hooks(ToolUse tools, const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings) {
  const auto use = std::make_shared<const ToolUse>(std::move(tools));
  const tokenizer::Tokenizer tok = tokenizer;  // a cheap handle, kept by the hooks
  const bool skip_special = use->syntax() == ToolSyntax::calculator;
  ToolHooks hooks;
  hooks.inject = [use, tok, skip_special](const std::vector<int64_t>& ids) -> std::vector<int64_t> {
    const auto text = use->respond(tok.decode(ids, skip_special));
    if (!text) return {};
    return tok.encode(*text, /*add_special_tokens=*/false);
  };
  hooks.stop = [use, tok, skip_special, stops = std::move(stop_strings)](const std::vector<int64_t>& ids) {
    if (stops.empty()) return false;
    const std::string text = use->without_responses(tok.decode(ids, skip_special));
    return std::any_of(stops.begin(), stops.end(), [&](const std::string& s) { return text.find(s) != std::string::npos; });
  };
  return hooks;
}

std::optional<ToolHooks> template_tool_hooks(const PromptTemplate& tmpl, std::shared_ptr<const ToolRegistry> registry,
                                             const tokenizer::Tokenizer& tokenizer, ToolLimits limits, bool calculator) {
  if (!registry) registry = std::make_shared<const ToolRegistry>(ToolRegistry::with_builtins());
  auto use = ToolUse::for_template(tmpl, std::move(registry), limits, calculator);
  if (!use) return std::nullopt;
  return tool_generation_hooks(std::move(*use), tokenizer, tmpl.stop());
}

}  // namespace ranktune::prompt
