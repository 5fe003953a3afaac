// Chat templates from the model: every conformance case of ../shared/chat_templates (real models'
// templates, expected strings rendered by transformers) through Tokenizer::apply_chat_template,
// byte for byte, and the expected raise_exception errors. Also reading the templates: a named
// list, chat_template.jinja winning over the config, continue_final_message.
#include "ranktune/io/file.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using ranktune::tokenizer::ChatTemplateOptions;
using ranktune::tokenizer::Tokenizer;

// Options for one case: add_generation_prompt, then kwargs (tools go to tools_json, the rest are
// template variables).
ChatTemplateOptions case_options(const ordered_json& c) {
  ChatTemplateOptions options;
  options.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
  ordered_json variables = ordered_json::object();
  for (const auto& [key, value] : c.at("kwargs").items()) {
    if (key == "tools") {
      options.tools_json = value.dump();
    } else if (key == "documents") {
      options.documents_json = value.dump();
    } else {
      variables[key] = value;
    }
  }
  if (!variables.empty()) options.variables_json = variables.dump();
  return options;
}

TEST(ChatTemplateCases, EveryCaseRendersExactlyOrRaisesTheExpectedError) {
  RANKTUNE_REQUIRE_SHARED("chat_templates/README.md");
  const fs::path root = ranktune::testing::shared_dir() + "/chat_templates";
  int cases = 0, directories = 0;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (!fs::exists(entry.path() / "cases.json")) continue;
    ++directories;
    const Tokenizer tok = Tokenizer::from_pretrained(entry.path().string());
    const ordered_json all = ordered_json::parse(ranktune::io::read_file((entry.path() / "cases.json").string()));
    for (const ordered_json& c : all) {
      ++cases;
      SCOPED_TRACE(entry.path().filename().string() + "/" + c.at("name").get<std::string>());
      const ChatTemplateOptions options = case_options(c);
      const std::string messages = c.at("messages").dump();
      if (c.contains("expected_error")) {
        const std::string error = ranktune::testing::error_of([&] { tok.apply_chat_template(messages, options); });
        EXPECT_NE(error.find(c.at("expected_error").get<std::string>()), std::string::npos) << error;
        continue;
      }
      EXPECT_EQ(tok.apply_chat_template(messages, options), c.at("expected").get<std::string>());
    }
  }
  EXPECT_GE(directories, 3);
  EXPECT_GE(cases, 21);
}

// A tokenizer directory of our own: a three-token vocabulary and a tokenizer_config.json written
// by each test.
class ChatTemplateFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ranktune_chat_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"<|im_end|>": 0, "<|endoftext|>": 1, "a": 2},
                                          "merges": []}})");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  fs::path dir_;
};

TEST_F(ChatTemplateFiles, NamedTemplatesChooseToolUseWithToolsAndDefaultOtherwise) {
  write("tokenizer_config.json", R"({"eos_token": {"content": "<|im_end|>", "special": true},
    "chat_template": [{"name": "default", "template": "D{{ eos_token }}"},
                      {"name": "tool_use", "template": "T{{ tools | length }}"}]})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  EXPECT_EQ(tok.chat_template_names(), (std::vector<std::string>{"default", "tool_use"}));
  EXPECT_EQ(tok.apply_chat_template("[]"), "D<|im_end|>");
  ChatTemplateOptions options;
  options.tools_json = R"([{"type": "function"}])";
  EXPECT_EQ(tok.apply_chat_template("[]", options), "T1");
  options.chat_template = "default";
  EXPECT_EQ(tok.apply_chat_template("[]", options), "D<|im_end|>");
  options.chat_template = "given {{ messages | length }}";  // not a name: the template itself
  EXPECT_EQ(tok.apply_chat_template("[]", options), "given 0");
}

TEST_F(ChatTemplateFiles, ChatTemplateJinjaWinsOverTheConfig) {
  write("tokenizer_config.json", R"({"chat_template": "from config"})");
  write("chat_template.jinja", "from file\n");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  EXPECT_EQ(tok.apply_chat_template("[]"), "from file");  // one trailing newline dropped, as jinja2
}

TEST_F(ChatTemplateFiles, WithoutATemplateTheErrorSaysWhereItLooked) {
  write("tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  EXPECT_TRUE(tok.chat_template_names().empty());
  const std::string error = ranktune::testing::error_of([&] { tok.apply_chat_template("[]"); });
  EXPECT_NE(error.find("no chat template"), std::string::npos) << error;
  EXPECT_NE(error.find("chat_template.jinja"), std::string::npos) << error;
}

TEST_F(ChatTemplateFiles, SeveralTemplatesWithoutDefaultNeedAName) {
  write("tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "R"}, {"name": "tool_use", "template": "T"}]})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  const std::string error = ranktune::testing::error_of([&] { tok.apply_chat_template("[]"); });
  EXPECT_NE(error.find("rag, tool_use"), std::string::npos) << error;
}

TEST_F(ChatTemplateFiles, SpecialTokensAreStringsAndVariablesOverrideThem) {
  write("tokenizer_config.json", R"({"bos_token": null, "eos_token": {"content": "<|im_end|>"}, "pad_token": "<|endoftext|>",
    "chat_template": "{{ bos_token is defined }}|{{ eos_token }}|{{ pad_token }}|{{ extra }}"})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  EXPECT_EQ(tok.apply_chat_template("[]"), "False|<|im_end|>|<|endoftext|>|");
  ChatTemplateOptions options;
  options.variables_json = R"({"eos_token": "E", "extra": [1, 2.5]})";
  EXPECT_EQ(tok.apply_chat_template("[]", options), "False|E|<|endoftext|>|[1, 2.5]");
}

TEST_F(ChatTemplateFiles, ContinueFinalMessageCutsAfterTheLastMessage) {
  write("tokenizer_config.json", R"({"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  const std::vector<ranktune::tokenizer::ChatMessage> chat = {{"user", "2+2?"}, {"assistant", "It is "}};
  ChatTemplateOptions options;
  options.continue_final_message = true;
  // The template trims "It is " to "It is": the cut falls back to the stripped text, as transformers.
  EXPECT_EQ(tok.apply_chat_template(chat, options), "<user>2+2?</user>\n<assistant>It is");
  options.add_generation_prompt = true;
  const std::string error = ranktune::testing::error_of([&] { tok.apply_chat_template(chat, options); });
  EXPECT_NE(error.find("not compatible"), std::string::npos) << error;
}

TEST_F(ChatTemplateFiles, ABadTemplateNamesTheFileTheKeyAndTheLine) {
  write("tokenizer_config.json", R"({"chat_template": "line one\n{% for m in messages %}{{ m | wordwrap }}{% endfor %}"})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  const ranktune::Error error = ranktune::testing::thrown_error([&] { tok.apply_chat_template("[]"); });
  EXPECT_EQ(error.message(), "the Jinja filter 'wordwrap' is not supported");
  EXPECT_EQ(error.context().line, 2);
  EXPECT_EQ(error.context().key, "chat_template");
  EXPECT_EQ(error.context().file, (dir_ / "tokenizer_config.json").string());
}

TEST_F(ChatTemplateFiles, BadArgumentsAreErrors) {
  write("tokenizer_config.json", R"({"chat_template": "x"})");
  const Tokenizer tok = Tokenizer::from_pretrained(dir_.string());
  EXPECT_NE(ranktune::testing::error_of([&] { tok.apply_chat_template("{"); }).find("invalid JSON"), std::string::npos);
  EXPECT_NE(ranktune::testing::error_of([&] { tok.apply_chat_template("{}"); }).find("JSON list"), std::string::npos);
  ChatTemplateOptions options;
  options.documents_json = R"(["just text"])";
  EXPECT_NE(ranktune::testing::error_of([&] { tok.apply_chat_template("[]", options); }).find("'title' and 'text'"),
            std::string::npos);
  options = {};
  options.variables_json = R"({"messages": []})";
  EXPECT_NE(ranktune::testing::error_of([&] { tok.apply_chat_template("[]", options); }).find("'messages'"),
            std::string::npos);
}

}  // namespace
