// The Jinja interpreter behind chat templates: tests/data/chat_templates/jinja_cases.json holds one
// small template per construct (whitespace control, statements, loop variables, scoping, macros,
// tests, filters, globals, undefined values, errors) with what jinja2 renders in transformers'
// environment (make_jinja_cases.py wrote it); every case must match byte for byte, or raise an
// error containing jinja2's message. Then what the cases cannot show: unsupported constructs are
// errors naming the construct and the line, and the pieces (values, JSON, lexer) directly.
#include "ranktune/io/file.h"
#include "test_util.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_lexer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

using namespace ranktune::tokenizer::jinja;
using ranktune::testing::error_of;

std::string render(const std::string& source, const Dict& variables = {}) {
  return Template(source, ranktune::ErrorContext{"test.jinja", "chat_template", -1}).render(variables);
}

Dict variables_of(const nlohmann::ordered_json& object) {
  Dict out;
  for (const auto& [key, value] : object.items()) out.emplace_back(Value::string(key), Value::from_json(value));
  return out;
}

TEST(Jinja, EveryGeneratedCaseMatchesJinja2) {
  const std::string path = std::string(RANKTUNE_SOURCE_DIR) + "/tests/data/chat_templates/jinja_cases.json";
  const auto cases = nlohmann::ordered_json::parse(ranktune::io::read_file(path));
  ASSERT_GE(cases.size(), 70u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::string source = c.at("template").get<std::string>();
    const Dict variables = variables_of(c.at("variables"));
    if (c.contains("expected_error")) {
      const std::string error = error_of([&] { render(source, variables); });
      EXPECT_NE(error.find(c.at("expected_error").get<std::string>()), std::string::npos) << error;
    } else {
      std::string rendered;
      EXPECT_NO_THROW(rendered = render(source, variables));
      EXPECT_EQ(rendered, c.at("expected").get<std::string>());
    }
  }
}

TEST(Jinja, RaiseExceptionMessageIsExactlyTheTemplatesMessage) {
  const ranktune::Error error = ranktune::testing::thrown_error([] { render("a\n{{ raise_exception('Only user and assistant roles') }}"); });
  EXPECT_EQ(error.message(), "Only user and assistant roles");
  EXPECT_EQ(error.context().line, 2);
  EXPECT_EQ(error.context().file, "test.jinja");
  EXPECT_EQ(error.context().key, "chat_template");
}

TEST(Jinja, UnsupportedConstructsAreNamedWithTheirLine) {
  struct Case {
    const char* source;
    const char* message;
    int line;
  };
  const Case cases[] = {
      {"x\n{% include 'other.jinja' %}", "the Jinja statement 'include' is not supported", 2},
      {"{% extends 'base' %}", "the Jinja statement 'extends' is not supported", 1},
      {"{% call m() %}x{% endcall %}", "the Jinja statement 'call' is not supported", 1},
      {"\n\n{{ x | wordwrap(5) }}", "the Jinja filter 'wordwrap' is not supported", 3},
      {"{{ x is escaped }}", "the Jinja test 'escaped' is not supported", 1},
      {"{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported", 1},
      {"{{ f(*args) }}", "*args and **kwargs in calls are not supported", 1},
      {"{% frobnicate %}", "unknown Jinja statement 'frobnicate'", 1},
      {"{{ '%d' % 3 }}", "printf-style string formatting", 1},
      {"{{ 'a'.format() }}", "the string method 'format' is not supported", 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.source);
    const ranktune::Error error = ranktune::testing::thrown_error([&] { render(c.source); });
    EXPECT_NE(error.message().find(c.message), std::string::npos) << error.message();
    EXPECT_EQ(error.context().line, c.line);
  }
}

TEST(Jinja, SyntaxErrorsSayWhatWasExpected) {
  EXPECT_NE(error_of([] { render("{% if x %}never closed"); }).find("looking for the following tags: 'elif' or 'else' or 'endif'"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ x "); }).find("unclosed tag"), std::string::npos);
  EXPECT_NE(error_of([] { render("{# no end"); }).find("unclosed comment"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 'abc }}"); }).find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ a ) }}"); }).find("unexpected ')'"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ a $ b }}"); }).find("unexpected character '$'"), std::string::npos);
  EXPECT_NE(error_of([] { render("{% set %}"); }).find("expected a name"), std::string::npos);
  // Found by fuzzing: an empty subscript was an item access with no key.
  EXPECT_NE(error_of([] { render("{{ messages[] }}"); }).find("expected an index or a slice"), std::string::npos);
  EXPECT_NE(error_of([] { render(std::string("{{ '\xff' }}")); }).find("not valid UTF-8"), std::string::npos);
}

TEST(Jinja, RunawayTemplatesStopWithAnError) {
  EXPECT_NE(error_of([] { render("{{ range(1000000) | length }}"); }).find("Range too big"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 'x' * 1000000000 }}"); }).find("too large"), std::string::npos);
  EXPECT_NE(error_of([] { render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"); }).find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(error_of([] { render("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}"); }).find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 9223372036854775807 + 1 }}"); }).find("integer overflow"), std::string::npos);
  // Found by fuzzing: float -> int conversions beyond int64 were undefined behaviour.
  EXPECT_NE(error_of([] { render("{{ 4.2e64 | int }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ '4.2e64' | int }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_EQ(render("{{ [1, 2, 3][1::9223372036854775807] }}"), "[2]");
  EXPECT_NE(error_of([] { render("{{ [1, 2][:1e300] }}"); }).find("slice stop must be an integer"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 'a' | indent(100000000000) }}"); }).find("too large"), std::string::npos);
}

TEST(Jinja, StrftimeNowFormatsTheCurrentDate) {
  const std::string year = render("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
}

TEST(Jinja, TemplatesAreReusableAndRendersIndependent) {
  const Template t("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", {});
  const Value two = Value::list({Value::string("a"), Value::string("b")});
  EXPECT_EQ(t.render({{Value::string("messages"), two}}), "2");
  EXPECT_EQ(t.render({{Value::string("messages"), two}}), "2");  // the namespace is per render
}

TEST(JinjaValue, PythonReprOfFloats) {
  EXPECT_EQ(python_float_repr(100.0), "100.0");
  EXPECT_EQ(python_float_repr(22.5), "22.5");
  EXPECT_EQ(python_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(python_float_repr(-2.5e-10), "-2.5e-10");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
}

TEST(JinjaValue, JsonKeepsKeyOrderAndWritesUnicodeAsIs) {
  const Value v = Value::from_json(nlohmann::ordered_json::parse(R"({"z": 1, "a": ["ü", 2.0, null, true]})"));
  EXPECT_EQ(to_json(v, JsonStyle{}), R"({"z": 1, "a": ["ü", 2.0, null, true]})");
  JsonStyle ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(to_json(Value::string("😀"), ascii), R"("\ud83d\ude00")");
}

TEST(JinjaLexer, PythonStripUsesUnicodeWhitespace) {
  EXPECT_EQ(python_strip("\u3000 a b\u00a0\n", StripSide::both), "a b");
  EXPECT_EQ(python_strip("  a ", StripSide::left), "a ");
  EXPECT_EQ(python_strip("  a ", StripSide::right), "  a");
  const std::string chars = "xy";
  EXPECT_EQ(python_strip("xyaxy", StripSide::both, &chars), "a");
}

}  // namespace

namespace {

// transformers' AssistantTracker: each {% generation %} block's [start, end), start being the
// length of the top-level output before it (for a block inside a captured text, the top level's
// length at that point) and end = start + the block's length.
TEST(Jinja, GenerationBlocksRecordWhereTheirTextWent) {
  const std::string source =
      "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}."
      "{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}";
  Dict variables = variables_of(nlohmann::ordered_json::parse(
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "héllo"},
                       {"role": "user", "content": "more"}, {"role": "assistant", "content": ""}]})"));
  std::vector<std::pair<size_t, size_t>> spans;
  const std::string text = Template(source, ranktune::ErrorContext{"t", "", -1}).render(variables, &spans);
  EXPECT_EQ(text, "user: hiassistant: héllo.user: moreassistant: .");  // trim_blocks ate the newlines
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(text.substr(spans[0].first, spans[0].second - spans[0].first), "héllo.");  // bytes
  EXPECT_EQ(text.substr(spans[1].first, spans[1].second - spans[1].first), ".");
  // Inside a captured text the block counts from where the top level is.
  spans.clear();
  const std::string captured = Template("ab{% set x %}cd{% generation %}ef{% endgeneration %}{% endset %}gh{{ x }}",
                                        ranktune::ErrorContext{"t", "", -1})
                                   .render({}, &spans);
  EXPECT_EQ(captured, "abghcdef");
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0], (std::pair<size_t, size_t>{2, 4}));
}

}  // namespace
