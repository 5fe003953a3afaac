#pragma once
// A Jinja template as transformers renders chat templates: jinja2's ImmutableSandboxedEnvironment
// with trim_blocks, lstrip_blocks and the loopcontrols extension, transformers' tojson,
// raise_exception and strftime_now, and its {% generation %} block. docs/chat_templates.md lists
// what is supported; anything else is a ranktune::Error naming the construct and the line.
//
//   jinja::Template t("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", {path, "", -1});
//   std::string text = t.render({{jinja::Value::string("messages"), messages}});

#include "jinja_ast.h"
#include "jinja_value.h"
#include "ranktune/core/error.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::tokenizer::jinja {

class Template {
 public:
  // Parses `source`; errors carry `origin`'s file and key (e.g. tokenizer_config.json and
  // "chat_template") and the line within the template. Unknown filters and tests are errors here
  // already.
  Template(const std::string& source, ErrorContext origin);

  // Renders with `variables` (string keys) over the globals; raise_exception(msg) becomes an
  // Error whose message() is msg.
  // With `generation_spans`, appends where each {% generation %} block's output went, as
  // transformers' AssistantTracker records it: [begin, end) from the length of the top-level output
  // when the block ends (bytes, not characters).
  std::string render(const Dict& variables, std::vector<std::pair<size_t, size_t>>* generation_spans = nullptr) const;

 private:
  std::shared_ptr<const Body> body_;
  ErrorContext origin_;
};

}  // namespace ranktune::tokenizer::jinja
