// `format: chat` prompt templates: the shipped gsm8k-cot-chat rendered through real models' chat
// templates (Qwen2.5, Llama 3.1, Mistral v0.3 from ../shared/chat_templates, copied beside a small
// vocabulary so the tests load fast): prompt, response and end-of-turn marker exactly as the
// model's format writes them, and a clear error where a template cannot be split.
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
using ranktune::prompt::ChatFormat;
using ranktune::prompt::PromptTemplate;
using ranktune::tokenizer::Tokenizer;

const std::string kSystem =
    "Solve the math word problem step by step. End your response with a line of the form \"#### <answer>\", where "
    "<answer> is the final number alone.";

class ChatFormatTemplate : public ::testing::Test {
 protected:
  // A tokenizer directory with `model`'s tokenizer_config.json (its chat template and special
  // tokens) and a vocabulary of its special tokens only.
  Tokenizer model_tokenizer(const std::string& model) {
    const std::string config_path = ranktune::testing::shared_dir() + "/chat_templates/" + model + "/tokenizer_config.json";
    dir_ = fs::temp_directory_path() / ("ranktune_chat_format_" + std::to_string(::getpid()) + "_" + model);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(config_path, dir_ / "tokenizer_config.json");
    std::ofstream(dir_ / "tokenizer.json") << R"({"model": {"type": "BPE", "vocab": {"<|im_end|>": 0, "<|endoftext|>": 1,
        "<|begin_of_text|>": 2, "<|eot_id|>": 3, "<s>": 4, "</s>": 5, "<unk>": 6}, "merges": []}})";
    return Tokenizer::from_pretrained(dir_.string());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

#define LOAD_OR_SKIP(tok, model)                                    \
  RANKTUNE_REQUIRE_SHARED("chat_templates/" model "/tokenizer_config.json"); \
  const Tokenizer tok = model_tokenizer(model)

TEST_F(ChatFormatTemplate, QwenRendersItsOwnChatMLTurns) {
  LOAD_OR_SKIP(tok, "qwen2.5");
  PromptTemplate t = PromptTemplate::load("gsm8k-cot-chat");
  EXPECT_EQ(t.format(), ChatFormat::chat);
  t.use_tokenizer(tok);
  EXPECT_EQ(t.render_prompt("What is 2+3?"), "<|im_start|>system\n" + kSystem +
                                                 "<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
                                                 "<|im_start|>assistant\n");
  EXPECT_EQ(t.render_response("2+3 = 5.", "5"), "2+3 = 5.\n#### 5<|im_end|>\n");
  EXPECT_EQ(t.end_of_turn(), "<|im_end|>");
  EXPECT_NE(std::find(t.stop().begin(), t.stop().end(), "<|im_end|>"), t.stop().end());
  EXPECT_TRUE(t.text_has_bos());  // the template decides about BOS: none is added
}

TEST_F(ChatFormatTemplate, LlamaWritesBosHeadersAndEotId) {
  LOAD_OR_SKIP(tok, "llama-3.1");
  PromptTemplate t = PromptTemplate::load("gsm8k-cot-chat");
  t.use_tokenizer(tok);
  const std::string prompt = t.render_prompt("What is 2+3?");
  EXPECT_EQ(prompt.rfind("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n", 0), 0u) << prompt;
  EXPECT_NE(prompt.find(kSystem + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>"),
            std::string::npos);
  EXPECT_TRUE(ranktune::ends_with(prompt, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")) << prompt;
  EXPECT_EQ(t.render_response("2+3 = 5.", "5"), "2+3 = 5.\n#### 5<|eot_id|>");
  EXPECT_EQ(t.end_of_turn(), "<|eot_id|>");
}

TEST_F(ChatFormatTemplate, ATemplateThatMovesTheSystemTextCannotBeSplit) {
  // Mistral v0.3 puts the system text into the last user message: with an answer after it, that
  // message is no longer last, so the prompt is not a prefix of the conversation.
  LOAD_OR_SKIP(tok, "mistral-v0.3");
  PromptTemplate t = PromptTemplate::load("gsm8k-cot-chat");
  t.use_tokenizer(tok);
  EXPECT_EQ(t.render_prompt("Q?"), "<s>[INST] " + kSystem + "\n\nQ?[/INST]");
  const std::string error = ranktune::testing::error_of([&] { t.render_response("r", "5"); });
  EXPECT_NE(error.find("cannot be split into prompt and response"), std::string::npos) << error;
  // Without a system text the same template splits: the response is " r\n#### 5</s>".
  PromptTemplate plain = PromptTemplate::parse("format: chat\nprompt: \"{question}\"\nresponse: \"{rationale}\\n#### {answer}\"\n"
                                               "answer_pattern: '####\\s*(\\d+)'\n",
                                               "mistral-user-only.yaml");
  plain.use_tokenizer(tok);
  EXPECT_EQ(plain.render_prompt("Q?"), "<s>[INST] Q?[/INST]");
  EXPECT_EQ(plain.render_response("r", "5"), " r\n#### 5</s>");
  EXPECT_EQ(plain.end_of_turn(), "</s>");
}

TEST(ChatFormat, RenderingBeforeUseTokenizerSaysWhatToDo) {
  const PromptTemplate t = PromptTemplate::load("gsm8k-cot-chat");
  const std::string error = ranktune::testing::error_of([&] { t.render_prompt("Q?"); });
  EXPECT_NE(error.find("use_tokenizer"), std::string::npos) << error;
  EXPECT_NE(error.find("gsm8k-cot-chat.yaml"), std::string::npos) << error;
}

}  // namespace
