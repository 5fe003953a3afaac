// prompt/tools: the tool registry, the calculator and json call syntaxes, their limits and errors,
// and the generation hooks on real tokenizers. Suites: Tool*.

#include "ranktune/core/error.h"
#include "ranktune/prompt/calculator.h"
#include "ranktune/prompt/template.h"
#include "ranktune/prompt/tools.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace ranktune;
using namespace ranktune::prompt;
using ::testing::HasSubstr;

namespace {

const std::string kQwenToolTurn =
    "<|im_end|>\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";

std::shared_ptr<ToolRegistry> builtins() { return std::make_shared<ToolRegistry>(ToolRegistry::with_builtins()); }

PromptTemplate json_template(const std::string& format, const std::string& extra = "") {
  return PromptTemplate::parse("format: " + format +
                                   "\nprompt: \"{question}\"\nresponse: \"{rationale} {answer}\"\n"
                                   "answer_pattern: \"#### (\\\\d+)\"\ntools:\n  syntax: json\n" + extra,
                               "tools-test.yaml");
}

std::string qwen_tools_dir() { return ranktune::testing::shared_dir() + "/chat_templates/qwen2.5"; }

TEST(ToolCalculatorTest, TheRegistryGivesExactlyWhatTheCalculatorGave) {
  const ToolUse calculator = *ToolUse::for_template(PromptTemplate::load("gsm8k-cot"), builtins(), {}, true);
  for (const char* text : {"She has <<48/2=", "<<48/2=24>> then <<24*3= ", "<<1,000*2=", "<<2**3=", "<<x=", "<<1/0=",
                           "no call", "<<3+4", "<<a=b=", "<<5-7=", "<<12/60=", "<<10/3="}) {
    EXPECT_EQ(calculator.respond(text), calculator_completion(text)) << text;
  }
  EXPECT_EQ(calculator.respond("Half is <<48/2="), std::optional<std::string>("24>>"));
  // No template tools and no calculator_by_default: no tool use at all.
  EXPECT_FALSE(ToolUse::for_template(PromptTemplate::load("gsm8k-cot"), builtins()).has_value());
}

TEST(ToolCalculatorTest, HooksInsertTheResultTokensAsTheOldInjectorDid) {
  const std::string dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";
  const auto tok = tokenizer::Tokenizer::from_pretrained(dir);
  const ToolHooks hooks = tool_generation_hooks(ToolUse(ToolSyntax::calculator, "{result}>>", builtins()), tok, {"Q:"});
  for (const char* text : {"So <<48/2=", "So <<7*6= ", "So <<2**3=", "So 24"}) {
    const auto ids = tok.encode(text);
    const auto old = calculator_completion(tok.decode(ids, true));
    EXPECT_EQ(hooks.inject(ids), old ? tok.encode(*old) : std::vector<int64_t>{}) << text;
  }
  EXPECT_TRUE(hooks.stop(tok.encode("24 Q:")));
  EXPECT_FALSE(hooks.stop(tok.encode("24 Q")));
}

TEST(ToolCalculatorTest, CallsBeyondTheLimitAreLeftToTheModel) {
  ToolLimits limits;
  limits.max_calls = 2;
  const ToolUse calculator(ToolSyntax::calculator, "{result}>>", builtins(), limits);
  EXPECT_EQ(calculator.respond("<<1+1=2>> <<2+2="), std::optional<std::string>("4>>"));
  EXPECT_EQ(calculator.respond("<<1+1=2>> <<2+2=4>> <<3+3="), std::nullopt);
}

TEST(ToolJsonTest, ACompleteCallRunsTheToolWithItsParsedArgumentsAndInsertsTheResponse) {
  auto registry = builtins();
  std::string seen;
  registry->add("get_current_temperature", [&seen](const std::string& args) {
    seen = args;
    const auto j = nlohmann::json::parse(args);
    return j.at("location").get<std::string>() == "Paris, France" ? std::string("22.5") : std::string("?");
  });
  const ToolUse tools = *ToolUse::for_template(json_template("chatml"), registry);
  EXPECT_EQ(tools.response(), kQwenToolTurn);
  const std::string call =
      "<tool_call>\n{\"name\": \"get_current_temperature\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": "
      "\"celsius\"}}\n</tool_call>";
  EXPECT_EQ(tools.respond(call.substr(0, call.size() - 1)), std::nullopt);  // not complete yet
  const auto response = tools.respond("Let me check.\n" + call);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(seen, "{\"location\":\"Paris, France\",\"unit\":\"celsius\"}");
  // Exactly the tool turn Qwen2.5's chat template renders (../shared/chat_templates/qwen2.5, case
  // tool_call_round_trip: "...</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n22.5\n...").
  EXPECT_EQ(*response, "<|im_end|>\n<|im_start|>user\n<tool_response>\n22.5\n</tool_response><|im_end|>\n"
                       "<|im_start|>assistant\n");
  // Once answered, the text no longer ends with a call.
  EXPECT_EQ(tools.respond("Let me check.\n" + call + *response), std::nullopt);
  // The built-in calculator through the json syntax.
  EXPECT_THAT(*tools.respond("<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"48/2\"}}\n</tool_call>"),
              HasSubstr("<tool_response>\n24\n</tool_response>"));
  // Arguments written as a string holding the object, and no arguments at all.
  EXPECT_EQ(parse_json_tool_call(R"({"name": "f", "arguments": "{\"a\": 1}"})").arguments_json, "{\"a\":1}");
  EXPECT_EQ(parse_json_tool_call(R"({"name": "f"})").arguments_json, "{}");
}

TEST(ToolJsonTest, TheChatTemplatesToolTurnIsDerivedFromTheModelsTemplate) {
  RANKTUNE_REQUIRE_SHARED("chat_templates/qwen2.5/tokenizer.json");
  PromptTemplate tmpl = json_template("chat");
  tmpl.use_tokenizer(tokenizer::Tokenizer::from_pretrained(qwen_tools_dir()));
  EXPECT_EQ(ToolUse::for_template(tmpl, builtins())->response(), kQwenToolTurn);
}

TEST(ToolJsonTest, MalformedCallsUnknownToolsAndToolErrorsBecomeErrorResults) {
  auto registry = builtins();
  registry->add("fails", [](const std::string&) -> std::string { throw std::runtime_error("disk on fire"); });
  const ToolUse tools(ToolSyntax::json, "[{result}]", registry);
  const auto result = [&](const std::string& body) {
    const auto r = tools.respond("<tool_call>" + body + "</tool_call>");
    EXPECT_TRUE(r.has_value()) << body;
    return r.value_or("");
  };
  EXPECT_EQ(result(R"({"name": "nope", "arguments": {}})"), R"([{"error":"unknown tool 'nope'; available: calculator, fails"}])");
  EXPECT_EQ(result(R"({"name": "fails", "arguments": {}})"), R"([{"error":"disk on fire"}])");
  EXPECT_THAT(result("{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2**99\"}}"),
              HasSubstr("not an arithmetic expression"));
  EXPECT_THAT(result("not json"), HasSubstr("malformed tool call: not JSON"));
  EXPECT_THAT(result(R"({"arguments": {}})"), HasSubstr("malformed tool call: expected {"));
  EXPECT_THAT(result(R"({"name": "calculator", "arguments": [1]})"), HasSubstr("'arguments' of 'calculator' is not a JSON object"));
  EXPECT_THAT(*tools.respond("no call </tool_call>"), HasSubstr("</tool_call> without <tool_call>"));
  EXPECT_THAT(*tools.respond("<tool_call>{}</tool_call> x </tool_call>"), HasSubstr("without <tool_call>"));
}

TEST(ToolJsonTest, LimitsBoundCallsAndResultLength) {
  auto registry = builtins();
  registry->add("long", [](const std::string&) { return std::string(10, 'a') + "\xC3\xA9" + "tail"; });
  ToolLimits limits;
  limits.max_calls = 1;
  limits.max_result_chars = 11;  // the cut would fall inside é: it moves back to the character's start
  const ToolUse tools(ToolSyntax::json, "[{result}]", registry, limits);
  const std::string call = R"(<tool_call>{"name": "long"}</tool_call>)";
  EXPECT_EQ(tools.respond(call), "[aaaaaaaaaa [truncated]]");
  EXPECT_EQ(tools.respond(call + "[x]" + call), "[{\"error\":\"t [truncated]]");  // every result is bounded
  limits.max_result_chars = 2000;
  const ToolUse roomy(ToolSyntax::json, "[{result}]", registry, limits);
  EXPECT_EQ(roomy.respond(call), "[aaaaaaaaaa\xC3\xA9tail]");
  EXPECT_EQ(roomy.respond(call + "[x]" + call), R"([{"error":"tool call limit reached: at most 1 calls per completion"}])");
}

TEST(ToolJsonTest, StopStringsInAToolsResponseDoNotEndTheCompletion) {
  const ToolUse tools(ToolSyntax::json, "<r>{result}</r>", builtins());
  const std::string call = R"(<tool_call>{"name": "x"}</tool_call>)";
  EXPECT_EQ(tools.without_responses("a" + call + "<r>Question: 1</r>b"), "a" + call + "b");
  EXPECT_EQ(tools.without_responses("a" + call + "<r>Questi"), "a" + call);  // still being inserted
  EXPECT_EQ(tools.without_responses("a" + call + "<"), "a" + call);
  EXPECT_EQ(tools.without_responses("a" + call + " Question:"), "a" + call + " Question:");  // the model's own text
}

TEST(ToolJsonTest, HooksOnAQwenVocabularyInsertTheToolTurnAsTokens) {
  RANKTUNE_REQUIRE_SHARED("chat_templates/qwen2.5/tokenizer.json");
  const auto tok = tokenizer::Tokenizer::from_pretrained(qwen_tools_dir());
  auto registry = builtins();
  registry->add("echo", [](const std::string& args) { return args; });
  const ToolHooks hooks =
      tool_generation_hooks(*ToolUse::for_template(json_template("chatml"), registry), tok, {"<|im_end|>"});
  const auto ids = tok.encode("<tool_call>\n{\"name\": \"echo\", \"arguments\": {\"q\": \"Question: hi\"}}\n</tool_call>");
  const std::vector<int64_t> inserted = hooks.inject(ids);
  const std::string expected = "<|im_end|>\n<|im_start|>user\n<tool_response>\n{\"q\":\"Question: hi\"}\n</tool_response>"
                               "<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(inserted, tok.encode(expected));
  EXPECT_EQ(tok.decode(inserted), expected);
  // The inserted turn holds <|im_end|>, a stop string: it does not end the completion; the model's does.
  std::vector<int64_t> all = ids;
  all.insert(all.end(), inserted.begin(), inserted.end());
  EXPECT_FALSE(hooks.stop(all));
  const auto more = tok.encode("It says hi.<|im_end|>");
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_TRUE(hooks.stop(all));
}

TEST(ToolTemplateTest, TheToolsSectionIsValidated) {
  EXPECT_EQ(json_template("plain").tool_syntax(), "json");
  EXPECT_EQ(ToolUse::for_template(json_template("plain"), builtins())->response(),
            "\n<tool_response>\n{result}\n</tool_response>\n");
  EXPECT_EQ(ToolUse::for_template(json_template("plain", "  response: \"<<{result}>>\"\n"), builtins())->response(),
            "<<{result}>>");
  const std::string base = "prompt: \"{question}\"\nresponse: \"{rationale} {answer}\"\nanswer_pattern: \"(\\\\d+)\"\n";
  EXPECT_THAT(ranktune::testing::error_of([&] { PromptTemplate::parse(base + "tools: {syntax: xml}\n", "t.yaml"); }),
              HasSubstr("unknown tool syntax 'xml'; expected calculator or json"));
  EXPECT_THAT(ranktune::testing::error_of([&] { PromptTemplate::parse(base + "tools: {syntax: json, response: \"x\"}\n", "t.yaml"); }),
              HasSubstr("must contain {result}"));
  EXPECT_THAT(ranktune::testing::error_of([&] { PromptTemplate::parse(base + "tools: {syntax: json, max: 3}\n", "t.yaml"); }),
              HasSubstr("max"));
  EXPECT_THAT(ranktune::testing::error_of([&] { ToolUse(ToolSyntax::json, "no slot", builtins()); }), HasSubstr("{result}"));
}

}  // namespace
