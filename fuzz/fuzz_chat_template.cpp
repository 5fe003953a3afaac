// Chat templates (Tokenizer::apply_chat_template with the input as the template): the Jinja
// lexer, parser and renderer on a conversation with a system turn, a tool call and a tool result.
// The first byte picks add_generation_prompt and whether tools are given; the rest is the template.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

const ranktune::tokenizer::Tokenizer& tokenizer() {
  static const ranktune::tokenizer::Tokenizer tok = [] {
    ranktune::fuzz::write_file("tokenizer.json", std::string(R"({"model": {"type": "BPE", "vocab": {"<s>": 0, "</s>": 1}, "merges": []}})"));
    ranktune::fuzz::write_file("tokenizer_config.json", std::string(R"({"bos_token": "<s>", "eos_token": "</s>"})"));
    return ranktune::tokenizer::Tokenizer::from_pretrained(ranktune::fuzz::scratch_dir());
  }();
  return tok;
}

const char* const kConversation = R"([
  {"role": "system", "content": "  Be brief.  "},
  {"role": "user", "content": "Weather in Paris? ü 😀"},
  {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2.5}}}]},
  {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 22}"},
  {"role": "assistant", "content": "22 degrees."}])";

const char* const kTools = R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ranktune::tokenizer::ChatTemplateOptions options;
  options.add_generation_prompt = (data[0] & 1) != 0;
  if ((data[0] & 2) != 0) options.tools_json = kTools;
  options.variables_json = R"({"date_string": "26 Jul 2024"})";
  options.chat_template = std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  if (options.chat_template.empty()) return 0;
  try {
    const std::string out = tokenizer().apply_chat_template(kConversation, options);
    if (out.size() == SIZE_MAX) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
