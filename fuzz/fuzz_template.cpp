// Prompt template YAML (PromptTemplate::parse): format, system text, few-shot exemplars, stop
// strings and answer/format regexes. A template that parses also renders a prompt and a response.
#include "ranktune/core/error.h"
#include "ranktune/prompt/template.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto t = ranktune::prompt::PromptTemplate::parse(text, "/fuzz/template.yaml");
    std::string out = t.render_prompt("What is 2+3?") + t.render_response("2+3 = 5.", "5");
    if (out.size() == SIZE_MAX) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
