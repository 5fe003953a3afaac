#pragma once
// Tools in generation: when a completion ends with a complete tool call, the tool runs and its
// result is inserted as tokens; generation then continues. Two call syntaxes, declared by the
// template (`tools: {syntax: ...}`, docs/tools.md):
//   calculator  GSM8K's annotations: the model writes "<<48/2=", the calculator inserts "24>>"
//   json        Qwen2.5/Hermes: "<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>",
//               answered by the template's response turn with "<tool_response>\n...\n</tool_response>"
//
//   auto registry = std::make_shared<ToolRegistry>(ToolRegistry::with_builtins());
//   registry->add("get_weather", [](const std::string& args) { return "22.5"; });
//   if (auto hooks = template_tool_hooks(tmpl, registry, tok))      // the template's tools: section
//     generation.inject(hooks->inject).stop(hooks->stop);             // model::GenerationOptions
//
// Everything is a function of the generated text (no state per row), so one ToolHooks serves
// every row of a batch. A tool never throws into generation: an unknown name, a malformed call, a
// tool's exception and the call limit become an error result the model reads.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::tokenizer {
class Tokenizer;
}

namespace ranktune::prompt {

class PromptTemplate;

// A tool: called with its arguments as the text of a JSON object ({"expression": "48/2"}),
// returns the result text. An exception is reported to the model as an error result.
using ToolFunction = std::function<std::string(const std::string& arguments_json)>;

// What a call gave: the text inserted for the model, and whether the tool succeeded.
struct ToolResult {
  bool ok = false;
  std::string text;  // the tool's result, or {"error": "..."} on failure
};

class ToolRegistry {
 public:
  // The built-in tools: `calculator` ({"expression": "48/2"} → "24"; evaluate_arithmetic, a
  // parser with limits, never eval).
  static ToolRegistry with_builtins();

  // Adds or replaces the tool `name` (not empty).
  void add(const std::string& name, ToolFunction function);
  bool contains(const std::string& name) const { return tools_.count(name) != 0; }
  std::vector<std::string> names() const;  // sorted
  // Runs `name` with `arguments_json`; never throws: an unknown tool or a tool's exception gives
  // ok = false and {"error": "..."}.
  ToolResult call(const std::string& name, const std::string& arguments_json) const;

 private:
  std::map<std::string, ToolFunction> tools_;
};

enum class ToolSyntax { calculator, json };

// "calculator", "json"; anything else is an error listing both.
ToolSyntax parse_tool_syntax(const std::string& name);

struct ToolLimits {
  int64_t max_calls = 32;           // per completion; later calls get an error result (json) or nothing (calculator)
  int64_t max_result_chars = 2000;  // a longer result is cut (at a UTF-8 boundary) and marked " [truncated]"
};

// A parsed json-syntax call. `error` is set (and name may be empty) when the call is malformed.
struct ToolCall {
  std::string name;
  std::string arguments_json;  // a JSON object's text ("{}" when the call has no arguments)
  std::string error;
};

// The body between <tool_call> and </tool_call>: {"name": "...", "arguments": {...}} (arguments
// may also be a string holding a JSON object, as some models write it).
ToolCall parse_json_tool_call(const std::string& body);

// Answers tool calls in generated text. `response` is the text inserted after a call, with
// {result} where the result goes ("{result}>>" for the calculator; Qwen's tool turn for json).
class ToolUse {
 public:
  ToolUse(ToolSyntax syntax, std::string response, std::shared_ptr<const ToolRegistry> registry, ToolLimits limits = {});

  // The template's `tools:` section (its syntax and response; for json without a `response`, the
  // response turn of the template's format: the model's chat template renders a `tool` message
  // for format: chat, chatml gets Qwen2.5's shape, plain and llama3 a bare <tool_response>
  // block). A template without a `tools:` section gets the calculator syntax when
  // `calculator_by_default`, else nullopt. format: chat needs use_tokenizer first.
  static std::optional<ToolUse> for_template(const PromptTemplate& tmpl, std::shared_ptr<const ToolRegistry> registry,
                                             ToolLimits limits = {}, bool calculator_by_default = false);

  // When `generated_text` ends with a complete call, runs it and returns the text to insert; else
  // nullopt. The calculator syntax inserts nothing for an expression that does not evaluate (the
  // model writes the result itself, as in GSM8K), so it gives exactly calculator_completion.
  std::optional<std::string> respond(const std::string& generated_text) const;
  // `text` with the inserted responses removed (json: from after each </tool_call> through the
  // end of its response), so stop strings in a tool's result do not end the completion.
  std::string without_responses(const std::string& text) const;

  ToolSyntax syntax() const { return syntax_; }
  const std::string& response() const { return response_; }
  const ToolLimits& limits() const { return limits_; }
  const ToolRegistry& registry() const { return *registry_; }

 private:
  std::string fill_response(std::string result) const;

  ToolSyntax syntax_;
  std::string response_;
  std::shared_ptr<const ToolRegistry> registry_;
  ToolLimits limits_;
};

// The two generation hooks, with the signatures of model::GenerationOptions::inject and ::stop
// (the model layer is above this one, so the types are spelled out).
struct ToolHooks {
  // After each token: the tokens of a call's response, or none.
  std::function<std::vector<int64_t>(const std::vector<int64_t>&)> inject;
  // True once the text (less the inserted responses) contains one of the stop strings.
  std::function<bool(const std::vector<int64_t>&)> stop;
};

// Hooks for generation with `tools`: responses are encoded without special tokens added (the
// response text's own markers, like <|im_end|>, become their ids). The calculator syntax decodes
// with special tokens skipped (as the GSM8K calculator always did); json keeps them, so the call
// and response markers are seen whatever the vocabulary marks special.
ToolHooks tool_generation_hooks(ToolUse tools, const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings);

// The one call for a generation loop (evaluation, sampling, GRPO rollouts): the hooks for the
// template's tool use (ToolUse::for_template) with its stop strings, or nullopt when the template
// declares no tools and `calculator` is false. `tmpl` must have seen the tokenizer (use_tokenizer)
// for format: chat. Null `registry`: ToolRegistry::with_builtins().
//   if (auto hooks = template_tool_hooks(tmpl, registry, tok)) options.inject(hooks->inject).stop(hooks->stop);
std::optional<ToolHooks> template_tool_hooks(const PromptTemplate& tmpl, std::shared_ptr<const ToolRegistry> registry,
                                             const tokenizer::Tokenizer& tokenizer, ToolLimits limits = {},
                                             bool calculator = false);

}  // namespace ranktune::prompt
