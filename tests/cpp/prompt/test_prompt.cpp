// The prompt layer: templates (YAML, rendering, errors), answer extraction and normalisation,
// rewards, the GSM8K calculator. Suites: Prompt*, Answer*, Reward*, Calculator*.

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/data/examples.h"
#include "ranktune/io/file.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/prompt/calculator.h"
#include "ranktune/prompt/reward.h"
#include "ranktune/prompt/template.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

using ranktune::Error;
using ranktune::prompt::accuracy_reward;
using ranktune::prompt::AnswerMode;
using ranktune::prompt::answers_match;
using ranktune::prompt::calculator_completion;
using ranktune::prompt::ChatFormat;
using ranktune::prompt::evaluate_arithmetic;
using ranktune::prompt::extract;
using ranktune::prompt::extract_answer;
using ranktune::prompt::format_calculator_result;
using ranktune::prompt::format_reward;
using ranktune::prompt::normalize_number;
using ranktune::prompt::PromptTemplate;
using ::testing::HasSubstr;
using ranktune::testing::thrown_error;

namespace {

const std::string kTemplateDir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/templates";

PromptTemplate shipped(const std::string& name) { return PromptTemplate::load(kTemplateDir + "/" + name + ".yaml"); }

// Sets an environment variable for the lifetime of the guard.
class EnvGuard {
 public:
  EnvGuard(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

const char* const kMinimal =
    "name: t\n"
    "prompt: \"Q: {question}\\nA:\"\n"
    "response: \" {rationale} The answer is {answer}.\"\n"
    "answer_pattern: 'The answer is (\\d+)'\n";

std::vector<nlohmann::json> read_jsonl(const std::string& path, size_t limit) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (out.size() < limit && std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace

// ---- templates: loading ----------------------------------------------------------------------

TEST(PromptTemplateTest, EveryShippedTemplateLoadsAndIsNamedAfterItsFile) {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kTemplateDir)) {
    if (entry.path().extension() != ".yaml") continue;
    const PromptTemplate t = PromptTemplate::load(entry.path().string());
    EXPECT_EQ(t.name(), entry.path().stem().string());
    EXPECT_FALSE(t.description().empty()) << t.name();
    if (t.format() == ChatFormat::chat) {  // renders with a model's chat template: test_chat_format.cpp
      ++count;
      continue;
    }
    EXPECT_FALSE(t.stop().empty()) << t.name();
    // The strict pattern finds the answer in the template's own target.
    const std::string target = t.render_response("Some reasoning: 6 * 7 = 42.", "42");
    EXPECT_EQ(extract(target, t).strict, std::optional<std::string>("42")) << t.name();
    EXPECT_EQ(format_reward(target, t), 1.0) << t.name();
    ++count;
  }
  EXPECT_GE(count, 6u);
}

TEST(PromptTemplateTest, LoadsByNameFromTheTemplatePath) {
  EnvGuard env("RANKTUNE_TEMPLATE_PATH", "/nonexistent/dir:" + kTemplateDir);
  const PromptTemplate t = PromptTemplate::load("gsm8k-cot");
  EXPECT_EQ(t.name(), "gsm8k-cot");
  EXPECT_EQ(std::filesystem::path(t.source()).parent_path(), std::filesystem::path(kTemplateDir));
  const auto names = ranktune::prompt::available_templates();
  for (const char* n : {"gsm8k-cot", "gsm8k-8shot", "r1", "r1-chatml", "gsm8k-cot-chatml", "gsm8k-cot-llama3"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  const auto path = ranktune::prompt::template_search_path();
  ASSERT_FALSE(path.empty());
  EXPECT_EQ(path.front(), kTemplateDir);  // the environment comes first; missing dirs are skipped
}

TEST(PromptTemplateTest, UnknownNameSuggestsAndListsTheAvailableOnes) {
  EnvGuard env("RANKTUNE_TEMPLATE_PATH", kTemplateDir);
  const Error e = thrown_error([] { PromptTemplate::load("gsm8k-cto"); });
  EXPECT_EQ(e.context().key, "gsm8k-cto");
  EXPECT_THAT(e.what(), HasSubstr("unknown template (did you mean 'gsm8k-cot'?)"));
  EXPECT_THAT(e.what(), HasSubstr("available: "));
  EXPECT_THAT(e.what(), HasSubstr("r1-chatml"));
  EXPECT_THAT(e.what(), HasSubstr(kTemplateDir));
}

TEST(PromptTemplateTest, MissingFileIsNamed) {
  const Error e = thrown_error([] { PromptTemplate::load("/no/such/template.yaml"); });
  EXPECT_EQ(e.context().file, "/no/such/template.yaml");
  EXPECT_THAT(e.what(), HasSubstr("file not found"));
}

// ---- templates: rendering --------------------------------------------------------------------

TEST(PromptTemplateTest, Gsm8kCotRendersTheQuestionAndRoundTripsTheSolution) {
  const PromptTemplate t = shipped("gsm8k-cot");
  EXPECT_EQ(t.format(), ChatFormat::plain);
  EXPECT_FALSE(t.text_has_bos());
  const std::string question =
      "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
      "clips did Natalia sell altogether in April and May?";
  EXPECT_EQ(t.render_prompt(question), "Q: " + question + "\nA: Let's think step by step.\n");
  const std::string solution =
      "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in "
      "April and May.\n#### 72";
  const auto split = ranktune::data::split_gsm8k_answer(solution);
  ASSERT_TRUE(split);
  EXPECT_EQ(split->second, "72");
  EXPECT_EQ(t.render_response(split->first, split->second), solution);
}

TEST(PromptTemplateTest, Gsm8kCotRoundTripsEveryTrainingSolution) {
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/train.jsonl");
  const PromptTemplate t = shipped("gsm8k-cot");
  size_t n = 0, same = 0, extracted = 0;
  for (const auto& record : read_jsonl(ranktune::testing::shared_dir() + "/data/gsm8k/train.jsonl", 100000)) {
    const std::string answer = record.at("answer").get<std::string>();
    const auto split = ranktune::data::split_gsm8k_answer(answer).value();
    const std::string target = t.render_response(split.first, split.second);
    ++n;
    same += target == answer;
    const auto e = extract(target, t);
    extracted += e.strict && answers_match(*e.strict, split.second) && e.flexible == e.strict;
  }
  std::cout << "[ gsm8k-cot round trip ] " << same << "/" << n << " targets identical, " << extracted << "/" << n
            << " answers extracted\n";
  EXPECT_EQ(same, n);
  EXPECT_EQ(extracted, n);
}

TEST(PromptTemplateTest, EightShotIsTheChainOfThoughtPromptOfWeiEtAl) {
  const PromptTemplate t = shipped("gsm8k-8shot");
  ASSERT_EQ(t.few_shot().size(), 8u);
  const std::string prompt = t.render_prompt("What is 2 + 2?");
  EXPECT_TRUE(ranktune::starts_with(
      prompt,
      "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
      "done, there will be 21 trees. How many trees did the grove workers plant today?\nA: There are 15 trees "
      "originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. "
      "The answer is 6.\n\nQ: If there are 3 cars in the parking lot"));
  EXPECT_TRUE(ranktune::ends_with(
      prompt,
      "A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
      "dollars left. 23 - 15 is 8. The answer is 8.\n\nQ: What is 2 + 2?\nA:"));
  // Eight exemplars and the question: nine "Q:" blocks separated by blank lines.
  size_t blocks = 0;
  for (size_t pos = 0; (pos = prompt.find("Q: ", pos)) != std::string::npos; ++pos) ++blocks;
  EXPECT_EQ(blocks, 9u);
  EXPECT_EQ(t.render_response("2 + 2 = 4.", "4"), " 2 + 2 = 4. The answer is 4.");
}

TEST(PromptTemplateTest, R1PromptIsTheVerbatimTemplateOfTheR1ZeroPaper) {
  const PromptTemplate t = shipped("r1");
  EXPECT_EQ(t.render_prompt("What is 2 + 3 * 4?"),
            "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
            "assistant first thinks about the reasoning process in the mind and then provides the user with the "
            "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
            "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
            "User: What is 2 + 3 * 4?. Assistant:");
  EXPECT_EQ(t.render_response("3 * 4 = 12, 2 + 12 = 14", "14"),
            " <think> 3 * 4 = 12, 2 + 12 = 14 </think> <answer> 14 </answer>");
}

TEST(PromptTemplateTest, ChatmlWrapsEachRoleAndEndsWithTheAssistantHeader) {
  const PromptTemplate t = shipped("gsm8k-cot-chatml");
  EXPECT_EQ(t.format(), ChatFormat::chatml);
  EXPECT_FALSE(t.text_has_bos());
  EXPECT_EQ(t.render_prompt("What is 6 * 7?"),
            "<|im_start|>system\n" + t.system() +
                "<|im_end|>\n<|im_start|>user\nWhat is 6 * 7?\nLet's think step by step.<|im_end|>\n"
                "<|im_start|>assistant\n");
  EXPECT_EQ(t.render_response("6 * 7 = 42", "42"), "6 * 7 = 42\n#### 42<|im_end|>");
  EXPECT_NE(std::find(t.stop().begin(), t.stop().end(), "<|im_end|>"), t.stop().end());
}

TEST(PromptTemplateTest, Llama3WrapsEachRoleAndStartsWithBeginOfText) {
  const PromptTemplate t = shipped("gsm8k-cot-llama3");
  EXPECT_TRUE(t.text_has_bos());
  EXPECT_EQ(t.render_prompt("What is 6 * 7?"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + t.system() +
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 6 * 7?\nLet's think step by "
                "step.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.render_response("6 * 7 = 42", "42"), "6 * 7 = 42\n#### 42<|eot_id|>");
  EXPECT_EQ(t.end_of_turn(), "<|eot_id|>");
}

TEST(PromptTemplateTest, ChatFewShotExemplarsArePriorTurnsWithoutASystemTurnWhenNoneIsSet) {
  const PromptTemplate t = PromptTemplate::parse(
      "format: chatml\n"
      "prompt: '{question}'\n"
      "response: \"{rationale}\\n#### {answer}\"\n"
      "few_shot:\n"
      "  - {question: 'What is 1 + 1?', rationale: '1 + 1 = 2', answer: 2}\n"
      "answer_pattern: '#### (\\d+)'\n",
      "inline.yaml");
  EXPECT_EQ(t.name(), "inline");  // defaults to the file stem
  EXPECT_EQ(t.render_prompt("What is 2 + 2?"),
            "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n1 + 1 = 2\n#### 2<|im_end|>\n"
            "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.stop(), std::vector<std::string>{"<|im_end|>"});  // added for chat formats
}

TEST(PromptTemplateTest, PlainSystemTextAndExemplarsAreSeparatedByBlankLines) {
  const PromptTemplate t = PromptTemplate::parse(
      std::string(kMinimal) +
          "system: Solve these.\n"
          "few_shot:\n"
          "  - {question: 'One?', rationale: 'It is 1.', answer: 1}\n"
          "  - {question: 'Two?', rationale: 'It is 2.', answer: 2}\n",
      "plain.yaml");
  EXPECT_EQ(t.render_prompt("Three?"),
            "Solve these.\n\nQ: One?\nA: It is 1. The answer is 1.\n\nQ: Two?\nA: It is 2. The answer is 2.\n\n"
            "Q: Three?\nA:");
}

TEST(PromptTemplateTest, SubstitutionIsOnePassAndDoubledBracesAreLiteral) {
  const PromptTemplate t = PromptTemplate::parse(
      "prompt: 'Fill {{answer}} for: {question} \\boxed{}'\n"
      "response: '{rationale} => {answer}'\n"
      "answer_pattern: '=> (\\d+)'\n",
      "braces.yaml");
  EXPECT_EQ(t.render_prompt("what is {answer}?"), "Fill {answer} for: what is {answer}? \\boxed{}");
  EXPECT_EQ(t.render_response("uses {question}", "3"), "uses {question} => 3");
}

// ---- templates: errors -----------------------------------------------------------------------

TEST(PromptTemplateErrorTest, MisspeltKeyNamesFileLineAndNearestKey) {
  const Error e = thrown_error([] {
    PromptTemplate::parse("name: t\npromt: 'Q: {question}'\nresponse: '{rationale} {answer}'\nanswer_pattern: '(\\d+)'\n",
                          "bad.yaml");
  });
  EXPECT_EQ(e.context().file, "bad.yaml");
  EXPECT_EQ(e.context().key, "promt");
  EXPECT_EQ(e.context().line, 2);
  EXPECT_THAT(e.what(), HasSubstr("bad.yaml:2: 'promt': unknown key (did you mean 'prompt'?)"));
}

TEST(PromptTemplateErrorTest, PromptWithoutQuestionPlaceholder) {
  const Error e = thrown_error([] {
    PromptTemplate::parse("name: t\nprompt: 'Q: ?'\nresponse: '{rationale} {answer}'\nanswer_pattern: '(\\d+)'\n",
                          "bad.yaml");
  });
  EXPECT_EQ(e.context().key, "prompt");
  EXPECT_EQ(e.context().line, 2);
  EXPECT_THAT(e.what(), HasSubstr("must contain the placeholder {question}"));
}

TEST(PromptTemplateErrorTest, ResponseWithoutRationaleOrAnswer) {
  const Error no_rationale = thrown_error([] {
    PromptTemplate::parse("prompt: '{question}'\nresponse: '#### {answer}'\nanswer_pattern: '(\\d+)'\n", "r.yaml");
  });
  EXPECT_EQ(no_rationale.context().key, "response");
  EXPECT_EQ(no_rationale.context().line, 2);
  EXPECT_THAT(no_rationale.what(), HasSubstr("{rationale}"));
  const Error no_answer = thrown_error([] {
    PromptTemplate::parse("prompt: '{question}'\nresponse: '{rationale}'\nanswer_pattern: '(\\d+)'\n", "r.yaml");
  });
  EXPECT_THAT(no_answer.what(), HasSubstr("must contain the placeholder {answer}"));
}

TEST(PromptTemplateErrorTest, PlaceholderNearMissesAndWrongFieldsAreNamed) {
  const Error typo = thrown_error([] {
    PromptTemplate::parse("prompt: 'Q: {questoin}'\nresponse: '{rationale} {answer}'\nanswer_pattern: '(\\d+)'\n",
                          "p.yaml");
  });
  EXPECT_THAT(typo.what(), HasSubstr("unknown placeholder {questoin} (did you mean {question}?)"));
  const Error wrong = thrown_error([] {
    PromptTemplate::parse("prompt: '{question} {answer}'\nresponse: '{rationale} {answer}'\nanswer_pattern: '(\\d+)'\n",
                          "p.yaml");
  });
  EXPECT_THAT(wrong.what(), HasSubstr("{answer} cannot be used here"));
  EXPECT_THAT(wrong.what(), HasSubstr("{{answer}}"));
}

TEST(PromptTemplateErrorTest, AnswerPatternMustCompileAndHaveOneGroup) {
  const std::string head = "name: t\nprompt: '{question}'\nresponse: '{rationale} {answer}'\n";
  const Error bad = thrown_error([&] { PromptTemplate::parse(head + "answer_pattern: '#### (\\d+'\n", "p.yaml"); });
  EXPECT_EQ(bad.context().key, "answer_pattern");
  EXPECT_EQ(bad.context().line, 4);
  EXPECT_THAT(bad.what(), HasSubstr("invalid regular expression"));
  const Error none = thrown_error([&] { PromptTemplate::parse(head + "answer_pattern: '#### \\d+'\n", "p.yaml"); });
  EXPECT_THAT(none.what(), HasSubstr("exactly one capture group (the answer), found 0"));
  const Error two = thrown_error([&] { PromptTemplate::parse(head + "answer_pattern: '(#+) (\\d+)'\n", "p.yaml"); });
  EXPECT_THAT(two.what(), HasSubstr("found 2"));
  const Error missing = thrown_error([&] { PromptTemplate::parse(head, "p.yaml"); });
  EXPECT_THAT(missing.what(), HasSubstr("'answer_pattern': missing required key"));
}

TEST(PromptTemplateErrorTest, UnknownFormatAndFewShotKeysSuggest) {
  const Error format = thrown_error([] { PromptTemplate::parse(std::string(kMinimal) + "format: chatlm\n", "f.yaml"); });
  EXPECT_EQ(format.context().line, 5);
  EXPECT_THAT(format.what(), HasSubstr("unknown format 'chatlm' (did you mean 'chatml'?)"));
  const Error item = thrown_error([] {
    PromptTemplate::parse(std::string(kMinimal) +
                              "few_shot:\n  - question: q\n    rational: r\n    answer: 1\n",
                          "f.yaml");
  });
  EXPECT_EQ(item.context().key, "few_shot[0].rational");
  EXPECT_EQ(item.context().line, 7);
  EXPECT_THAT(item.what(), HasSubstr("did you mean 'rationale'?"));
  const Error syntax = thrown_error([] { PromptTemplate::parse("name: t\nprompt: [1, 2\n", "s.yaml"); });
  EXPECT_EQ(syntax.context().file, "s.yaml");
  EXPECT_THAT(syntax.what(), HasSubstr("invalid YAML"));
}

// ---- answers: normalisation ------------------------------------------------------------------

TEST(AnswerNormalizeTest, WritesNumbersCanonically) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1,000", "1000"},
      {"$1,000", "1000"},
      {"5.00", "5"},
      {"2.50", "2.5"},
      {"72.", "72"},
      {"+5", "5"},
      {"3/4", "0.75"},
      {"-5", "-5"},
      {"\xE2\x88\x92" "5", "-5"},  // U+2212 minus
      {"-0", "0"},
      {".5", "0.5"},
      {"007", "7"},
      {"50%", "50"},
      {"18 dollars", "18"},
      {"5 cm", "5"},
      {"60 km/h", "60"},
      {"\xE2\x82\xAC" "20", "20"},          // €
      {"\xC2\xA3" "3.50", "3.5"},           // £
      {"-$5.00", "-5"},
      {"$-5", "-5"},
      {"1 1/2", "1.5"},
      {"\\frac{3}{4}", "0.75"},
      {"\\$18", "18"},
      {"18 \\text{ dollars}", "18"},
      {"1{,}000", "1000"},
      {"1e3", "1000"},
      {"1,234,567.890", "1234567.89"},
      {"2/3", "0.6666666667"},
      {"  42  ", "42"},
      {"x = 5", "x = 5"},  // not a number: returned trimmed
      {"five", "five"},
      {"3 + 4", "3 + 4"},
      {"1/0", "1/0"},
      {"3 4", "3 4"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(normalize_number(in), out) << "input: " << in;
  EXPECT_EQ(ranktune::prompt::parse_number("$1,000.50"), std::optional<double>(1000.5));
  EXPECT_EQ(ranktune::prompt::parse_number("seven"), std::nullopt);
}

TEST(AnswerMatchTest, ComparesNumbersByValueAndTextOtherwise) {
  EXPECT_TRUE(answers_match("1,000", "1000"));
  EXPECT_TRUE(answers_match("5.00", "5"));
  EXPECT_TRUE(answers_match("$18", "18"));
  EXPECT_TRUE(answers_match("3/4", "0.75"));
  EXPECT_TRUE(answers_match("1/3", "0.3333333333"));
  EXPECT_FALSE(answers_match("0.33", "1/3"));
  EXPECT_FALSE(answers_match("-5", "5"));
  EXPECT_FALSE(answers_match("72", "73"));
  EXPECT_FALSE(answers_match("12345678901234567891", "12345678901234567890"));  // integers compare exactly
  EXPECT_TRUE(answers_match("Yes.", "yes"));
  EXPECT_FALSE(answers_match("72", "seventy-two"));
}

// ---- answers: extraction ---------------------------------------------------------------------

TEST(AnswerExtractTest, FlexibleExtractionHandlesTheTraps) {
  struct Case {
    std::string text;
    std::optional<std::string> answer;
  };
  const std::vector<Case> cases = {
      {"Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"},
      {"#### 1,000", "1000"},
      {"#### $1,000.00", "1000"},
      {"#### -12", "-12"},
      {"#### 5 apples in 3 baskets", "5"},  // the number right after the marker
      {"The answer is $18.", "18"},
      {"The answer is -3.", "-3"},
      {"The answer is 2.50.", "2.5"},
      {"The answer is 3/4.", "0.75"},
      {"The final answer is: 12", "12"},
      {"The answer is 1,000,000.", "1000000"},
      {"\\boxed{1,000}", "1000"},
      {"So the total is $\\boxed{18}$ dollars.", "18"},
      {"\\boxed{\\frac{1}{2}}", "0.5"},
      {"\\boxed{x = 5}", "5"},
      {"<answer> 42 </answer>", "42"},
      {"<answer>\n 1,234 \n</answer>", "1234"},
      {"<answer>yes</answer>", "yes"},
      {"<answer> 7 </answer> then <answer> 9 </answer>", "9"},
      // a "####" inside the rationale (a markdown heading) is not the final answer
      {"#### 1. Count the apples\n3 + 4 = 7\n#### 7", "7"},
      // a self-correction: the last statement wins
      {"The answer is 5. Wait, I forgot the pears. The answer is 6.", "6"},
      // the last format wins over an earlier one of another kind
      {"The answer is 5.\n#### 6", "6"},
      // no format: the last number
      {"So the total is 5.00", "5"},
      {"She has 3 apples and 4 pears, so 7 fruits in all.", "7"},
      {"It costs $1,234.50 in total", "1234.5"},
      {"The temperature is -5 degrees.", "-5"},
      {"10-3=7", "7"},  // a subtraction, not -3
      {"The list is 3,4,5", "5"},
      {"Version v2 costs 30", "30"},
      {"I do not know.", std::nullopt},
      {"", std::nullopt},
      {"The answer is 42 \xE2\x82", "42"},  // cut inside a UTF-8 character
  };
  for (const auto& c : cases) EXPECT_EQ(extract_answer(c.text), c.answer) << "text: " << c.text;
  EXPECT_GE(cases.size(), 30u);
}

TEST(AnswerExtractTest, StrictUsesTheTemplateFormatAndFlexibleAnyFormat) {
  const PromptTemplate eight = shipped("gsm8k-8shot");
  const PromptTemplate cot = shipped("gsm8k-cot");
  const auto hash = extract("6 * 7 = 42\n#### 42", eight);
  EXPECT_EQ(hash.strict, std::nullopt);  // gsm8k-8shot's format is "The answer is N"
  EXPECT_EQ(hash.flexible, std::optional<std::string>("42"));
  const auto sentence = extract(" 6 * 7 = 42. The answer is 42.", eight);
  EXPECT_EQ(sentence.strict, std::optional<std::string>("42"));
  const auto money = extract("4 * $2.50 = $10.00\n#### $10.00", cot);
  EXPECT_EQ(money.strict, std::optional<std::string>("10"));
  const auto none = extract("I cannot solve this.", cot);
  EXPECT_EQ(none.strict, std::nullopt);
  EXPECT_EQ(none.flexible, std::nullopt);
}

TEST(AnswerExtractTest, ContinuationAfterTheAnswerIsCutAtTheStopStrings) {
  const PromptTemplate cot = shipped("gsm8k-cot");
  const std::string text = "6 * 12 = 72\n#### 72\nQ: Tom has 3 apples and buys 12 more.\nA: 3 + 12 = 15\n#### 15";
  const auto e = extract(text, cot);
  EXPECT_EQ(e.strict, std::optional<std::string>("72"));
  EXPECT_EQ(e.flexible, std::optional<std::string>("72"));
  // With a bare pattern nothing is cut, and the last occurrence wins.
  EXPECT_EQ(extract(text, cot.answer_pattern()).strict, std::optional<std::string>("15"));
  EXPECT_EQ(ranktune::prompt::cut_at_stop("a STOP b stop c", {"stop", "STOP"}), "a ");
}

TEST(AnswerExtractTest, PatternWithoutOneGroupIsAnError) {
  EXPECT_THAT(thrown_error([] { extract("#### 5", "#### \\d+"); }).what(), HasSubstr("exactly one capture group"));
  EXPECT_THAT(thrown_error([] { extract("#### 5", "#### (\\d+"); }).what(), HasSubstr("invalid regular expression"));
}

// ---- rewards ---------------------------------------------------------------------------------

TEST(RewardTest, R1FormatRewardRequiresThinkThenAnswerAndNothingElse) {
  const PromptTemplate r1 = shipped("r1");
  EXPECT_EQ(format_reward(" <think> 2 + 12 = 14 </think> <answer> 14 </answer>", r1), 1.0);
  EXPECT_EQ(format_reward("<think>\nmulti\nline\n</think>\n<answer>14</answer>\n", r1), 1.0);
  // generation ran past the answer into a new turn: cut at the stop string "User:"
  EXPECT_EQ(format_reward("<think> a </think> <answer> 14 </answer> User: next question", r1), 1.0);
  EXPECT_EQ(format_reward("<answer> 14 </answer>", r1), 0.0);                                  // no <think>
  EXPECT_EQ(format_reward("<think> a </think>", r1), 0.0);                                     // no <answer>
  EXPECT_EQ(format_reward("<answer> 14 </answer> <think> a </think>", r1), 0.0);               // wrong order
  EXPECT_EQ(format_reward("<think> a </think> <answer> 14 </answer> and more text", r1), 0.0);  // trailing text
  EXPECT_EQ(format_reward("Sure! <think> a </think> <answer> 14 </answer>", r1), 0.0);         // leading text
  EXPECT_EQ(format_reward("<think> a <think> b </think> <answer> 1 </answer>", r1), 0.0);      // nested tags
  EXPECT_EQ(format_reward("<think> a </think> <answer> 1 </answer><answer> 2 </answer>", r1), 0.0);
  const PromptTemplate chat = shipped("r1-chatml");
  EXPECT_EQ(format_reward("<think>\na\n</think>\n<answer>\n14\n</answer><|im_end|>", chat), 1.0);
}

TEST(RewardTest, AccuracyRewardComparesTheExtractedAnswerWithTheGold) {
  const PromptTemplate r1 = shipped("r1");
  EXPECT_EQ(accuracy_reward("<think> 7 * 2 = 14 </think> <answer> 14 </answer>", "14", r1), 1.0);
  EXPECT_EQ(accuracy_reward("<think> ... </think> <answer> $1,000.00 </answer>", "1000", r1), 1.0);
  EXPECT_EQ(accuracy_reward("<think> ... </think> <answer> 13 </answer>", "14", r1), 0.0);
  // the answer outside the template's format only counts in flexible mode
  EXPECT_EQ(accuracy_reward("I think it is 14", "14", r1), 0.0);
  EXPECT_EQ(accuracy_reward("I think it is 14", "14", r1, AnswerMode::flexible), 1.0);
  // the gold may be a whole GSM8K solution
  const PromptTemplate cot = shipped("gsm8k-cot");
  EXPECT_EQ(accuracy_reward("48 + 24 = 72\n#### 72\nQ: next\n#### 5", "72", cot), 1.0);
}

TEST(RewardTest, NonR1FormatRewardIsTheStrictPatternBeingFound) {
  const PromptTemplate cot = shipped("gsm8k-cot");
  EXPECT_EQ(format_reward("6 * 7 = 42\n#### 42", cot), 1.0);
  EXPECT_EQ(format_reward("6 * 7 = 42. The answer is 42.", cot), 0.0);
  const PromptTemplate eight = shipped("gsm8k-8shot");
  EXPECT_EQ(format_reward(" 6 * 7 = 42. The answer is 42.", eight), 1.0);
}

// ---- calculator ------------------------------------------------------------------------------

TEST(CalculatorTest, EvaluatesArithmeticWithPrecedenceAndUnaryMinus) {
  const std::vector<std::pair<std::string, double>> cases = {
      {"48/2", 24},     {"5*12", 60},       {"0.5*30", 15},     {"2+3*4", 14},   {"(2+3)*4", 20},
      {"-3+5", 2},      {"-(2+3)", -5},     {"2*-3", -6},       {"--4", 4},      {"1,000*2", 2000},
      {".5*4", 2},      {"10/4", 2.5},      {" 3 + 4 ", 7},     {"100-50-30-15", 5}, {"12/60", 0.2},
      {"2*(3+(4-1))/3", 4}, {"+30+46+38", 114}, {"560//10", 56}, {"7//2", 3}, {"-7//2", -4},
  };
  for (const auto& [expr, value] : cases) {
    const auto v = evaluate_arithmetic(expr);
    ASSERT_TRUE(v.has_value()) << expr;
    EXPECT_NEAR(*v, value, 1e-12) << expr;
  }
}

TEST(CalculatorTest, RejectsAnythingButArithmetic) {
  for (const char* expr : {"1/0", "5/(2-2)", "2**3", "x*3", "", "  ", "(1+2", "1+2)", "3%", "__import__('os')",
                           "1e3", "2(3)", "4 4", "1..2", "5 / / 2", "5///2", "sqrt(4)"}) {
    EXPECT_EQ(evaluate_arithmetic(expr), std::nullopt) << expr;
  }
  EXPECT_EQ(evaluate_arithmetic(std::string(500, '(') + "1" + std::string(500, ')')), std::nullopt);
  EXPECT_EQ(evaluate_arithmetic(std::string(500, '-') + "1"), std::nullopt);
  EXPECT_TRUE(evaluate_arithmetic(std::string(50, '(') + "1" + std::string(50, ')')).has_value());
}

TEST(CalculatorTest, FormatsResultsTheWayGsm8kAnnotationsDo) {
  EXPECT_EQ(format_calculator_result(24.0), "24");
  EXPECT_EQ(format_calculator_result(-3.0), "-3");
  EXPECT_EQ(format_calculator_result(-0.0), "0");
  EXPECT_EQ(format_calculator_result(0.2), "0.2");
  EXPECT_EQ(format_calculator_result(12.5), "12.5");
  EXPECT_EQ(format_calculator_result(2.10 + 0.50 + 0.20), "2.8");       // 2.8000000000000003
  EXPECT_EQ(format_calculator_result(2.8 * 700), "1960");               // 1959.9999999999998
  EXPECT_EQ(format_calculator_result(1.0 / 3), "0.333333");
  EXPECT_EQ(format_calculator_result(1234567.0), "1234567");
}

TEST(CalculatorTest, CompletesAnUnfinishedAnnotation) {
  EXPECT_EQ(calculator_completion("Natalia sold 48/2 = <<48/2="), std::optional<std::string>("24>>"));
  EXPECT_EQ(calculator_completion("12 * 5 = <<5*12="), std::optional<std::string>("60>>"));
  EXPECT_EQ(calculator_completion("half of 30 is <<0.5*30="), std::optional<std::string>("15>>"));
  EXPECT_EQ(calculator_completion("<<1+1=2>>2 and then <<12/60= "), std::optional<std::string>("0.2>>"));
  EXPECT_EQ(calculator_completion("no annotation here"), std::nullopt);
  EXPECT_EQ(calculator_completion("<<48/2=24>> done"), std::nullopt);  // finished
  EXPECT_EQ(calculator_completion("<<48/2"), std::nullopt);            // no '=' yet
  EXPECT_EQ(calculator_completion("<<48/2=2"), std::nullopt);          // the model is writing the result
  EXPECT_EQ(calculator_completion("<<x*2="), std::nullopt);
  EXPECT_EQ(calculator_completion("<<1/0="), std::nullopt);
  EXPECT_EQ(calculator_completion("<<2=2="), std::nullopt);
}

// Every calculator annotation <<lhs=rhs>> of GSM8K's training solutions: annotations whose left
// side is not pure arithmetic (or whose result is not a number) are skipped and counted; the rest
// must evaluate to the annotated result (within the rounding of the annotated digits).
TEST(CalculatorTest, ReproducesGsm8kTrainingAnnotations) {
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/train.jsonl");
  const std::regex annotation("<<([^<>]*)>>");
  const std::regex arithmetic("^[0-9.,+\\-*/() ]+$");
  size_t total = 0, skipped = 0, reproduced = 0, exact_text = 0, completed = 0;
  std::vector<std::string> failures;
  for (const auto& record : read_jsonl(ranktune::testing::shared_dir() + "/data/gsm8k/train.jsonl", 100000)) {
    const std::string solution = record.at("answer").get<std::string>();
    for (auto it = std::sregex_iterator(solution.begin(), solution.end(), annotation); it != std::sregex_iterator();
         ++it) {
      ++total;
      const std::string body = (*it)[1].str();
      const size_t eq = body.find('=');
      const std::string lhs = eq == std::string::npos ? "" : body.substr(0, eq);
      const std::string rhs = eq == std::string::npos ? "" : body.substr(eq + 1);
      const auto expected = ranktune::prompt::parse_number(rhs);
      if (lhs.empty() || !std::regex_match(lhs, arithmetic) || !expected || rhs.find_first_of("0123456789") == std::string::npos) {
        ++skipped;
        continue;
      }
      const auto value = evaluate_arithmetic(lhs);
      const size_t dot = rhs.find('.');
      const int decimals = dot == std::string::npos ? 0 : static_cast<int>(rhs.size() - dot - 1);
      const double tolerance = 0.5 * std::pow(10.0, -decimals) + 1e-9 * std::max(1.0, std::fabs(*expected));
      if (value && std::fabs(*value - *expected) <= tolerance) {
        ++reproduced;
      } else if (failures.size() < 10) {
        failures.push_back(body);
      }
      exact_text += value && format_calculator_result(*value) == normalize_number(rhs);
      const std::string prefix = solution.substr(0, static_cast<size_t>(it->position(0)) + 2 + eq + 1);
      const auto insert = calculator_completion(prefix);
      completed += insert && answers_match(insert->substr(0, insert->size() - 2), rhs);
    }
  }
  const size_t checked = total - skipped;
  const double rate = checked == 0 ? 0.0 : static_cast<double>(reproduced) / checked;
  std::cout << "[ gsm8k calculator ] annotations " << total << ", skipped (not arithmetic) " << skipped
            << ", reproduced " << reproduced << "/" << checked << " (" << 100.0 * rate << "%), formatted exactly "
            << exact_text << ", completed from the prefix " << completed << "\n";
  for (const auto& f : failures) std::cout << "  not reproduced: <<" << f << ">>\n";
  EXPECT_GT(total, 1000u);
  EXPECT_GE(rate, 0.99);
  EXPECT_GE(static_cast<double>(completed) / checked, 0.99);
}
