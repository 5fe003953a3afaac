// Conversational SFT data through a model's own chat template (a `format: chat` recipe template):
// the records are rendered by the real Qwen2.5 / Llama 3.1 / Mistral v0.3 templates of
// ../shared/chat_templates (with vocabularies of their families) exactly as the trainer renders
// them (train/sft_data.h), and exactly the assistant turns carry labels.

#include "ranktune/io/file.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"
#include "train/sft_data.h"

#include <gmock/gmock.h>

#include <filesystem>

using namespace ranktune;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;

const char* const kConversation =
    R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},)"
    R"( {"role": "assistant", "content": "2+2 = 4.\n#### 4"}, {"role": "user", "content": "And 3+3?"},)"
    R"( {"role": "assistant", "content": "#### 6"}]})";

struct Rendered {
  std::vector<int64_t> input_ids;
  std::vector<std::string> trained;  // each run of labelled tokens, decoded
};

class SftChatTemplate : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = (fs::temp_directory_path() / ("ranktune_sft_chat_" + std::to_string(::getpid()) + ".jsonl")).string();
  }
  void TearDown() override { fs::remove(file_); }

  train::DataSection data_section(const std::string& line) {
    io::write_file_atomic(file_, "\n" + line + "\n");  // the record is on line 2
    train::DataSection d;
    d.format = train::DataFormat::messages;
    d.messages_field = "messages";
    return d;
  }

  // The recipe template gsm8k-cot-chat bound to `tok`, as the trainer binds it.
  static prompt::PromptTemplate chat_template(const tokenizer::Tokenizer& tok) {
    prompt::PromptTemplate t = prompt::PromptTemplate::load("gsm8k-cot-chat");
    t.use_tokenizer(tok);
    return t;
  }

  Rendered render(const tokenizer::Tokenizer& tok, const std::string& line) {
    const train::DataSection d = data_section(line);
    const prompt::PromptTemplate t = chat_template(tok);
    data::TokenizeOptions options;
    options.max_length = 1024;
    options.add_bos = !t.text_has_bos();  // as setup_training_data: the chat template writes its own
    options.add_eos = false;
    const auto examples = train::tokenize_sft_records(train::load_sft_records(file_, d, 0), file_, d, t, tok, options);
    EXPECT_EQ(examples.size(), 1u);
    Rendered out;
    out.input_ids = examples[0].input_ids;
    std::vector<int64_t> run;
    for (size_t i = 0; i <= examples[0].labels.size(); ++i) {
      const bool labelled = i < examples[0].labels.size() && examples[0].labels[i] != -100;
      if (labelled) {
        EXPECT_EQ(examples[0].labels[i], examples[0].input_ids[i]);
        run.push_back(examples[0].labels[i]);
      } else if (!run.empty()) {
        out.trained.push_back(tok.decode(run));
        run.clear();
      }
    }
    return out;
  }

  std::string file_;
};

tokenizer::Tokenizer shared_tokenizer(const std::string& model) {
  return tokenizer::Tokenizer::from_pretrained(ranktune::testing::shared_dir() + "/chat_templates/" + model);
}

std::vector<tokenizer::ChatMessage> conversation() {
  return {{"system", "Be brief."},
          {"user", "What is 2+2?"},
          {"assistant", "2+2 = 4.\n#### 4"},
          {"user", "And 3+3?"},
          {"assistant", "#### 6"}};
}

TEST_F(SftChatTemplate, QwenTrainsEachAnswerThroughItsImEnd) {
  RANKTUNE_REQUIRE_SHARED("chat_templates/qwen2.5/tokenizer.json");
  const auto tok = shared_tokenizer("qwen2.5");
  const Rendered r = render(tok, kConversation);
  // The whole text is the model's rendering of the conversation, token for token.
  EXPECT_EQ(tok.decode(r.input_ids), tok.apply_chat_template(conversation()));
  EXPECT_THAT(r.trained, ElementsAre("2+2 = 4.\n#### 4<|im_end|>\n", "#### 6<|im_end|>\n"));
}

TEST_F(SftChatTemplate, LlamaTrainsEachAnswerThroughItsEotId) {
  RANKTUNE_REQUIRE_SHARED("chat_templates/llama-3.1/tokenizer.json");
  const auto tok = shared_tokenizer("llama-3.1");
  const Rendered r = render(tok, kConversation);
  const std::string text = tok.decode(r.input_ids);
  EXPECT_EQ(text, tok.apply_chat_template(conversation()));
  EXPECT_EQ(text.rfind("<|begin_of_text|><|start_header_id|>system<|end_header_id|>", 0), 0u) << text;
  EXPECT_EQ(std::count(r.input_ids.begin(), r.input_ids.end(), *tok.bos_token_id()), 1);  // no second BOS
  EXPECT_THAT(r.trained, ElementsAre("2+2 = 4.\n#### 4<|eot_id|>", "#### 6<|eot_id|>"));
}

TEST_F(SftChatTemplate, MistralMovesTheSystemTextSoTurnsCannotBeToldApart) {
  // Mistral v0.3 writes the system message into the last user turn: a conversation's first turns
  // are not rendered as the start of the whole, so its assistant spans cannot be found.
  RANKTUNE_REQUIRE_SHARED("chat_templates/mistral-v0.3/tokenizer.json");
  const auto tok = shared_tokenizer("mistral-v0.3");
  const std::string message = ranktune::testing::error_of([&] { render(tok, kConversation); });
  EXPECT_THAT(message, HasSubstr(file_ + ":2:"));
  EXPECT_THAT(message, HasSubstr("data.assistant_only_loss=false"));
  // Without a system message, each answer is trained with the end-of-sequence token after it.
  const Rendered r = render(tok, R"({"messages": [{"role": "user", "content": "What is 2+2?"},)"
                                 R"( {"role": "assistant", "content": "#### 4"}]})");
  ASSERT_EQ(r.trained.size(), 1u);
  EXPECT_THAT(r.trained[0], HasSubstr("#### 4</s>"));
}

}  // namespace
