// SFT data formats (data/sft.h): reading each format, finding assistant spans by rendering
// prefixes, and exactly which tokens carry labels after tokenize_segments.

#include "ranktune/core/error.h"
#include "ranktune/data/batching.h"
#include "ranktune/data/sft.h"
#include "ranktune/io/file.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <filesystem>
#include <set>

using namespace ranktune;
using ::testing::HasSubstr;
using ranktune::testing::error_of;

namespace {

namespace fs = std::filesystem;

const std::string kSftDir = std::string(RANKTUNE_SOURCE_DIR) + "/tests/data/sft/";

// ChatML, written out here so the test does not depend on the prompt layer.
std::string chatml(const std::vector<data::Message>& messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  return add_generation_prompt ? out + "<|im_start|>assistant\n" : out;
}

std::string trained_text(const std::vector<data::Segment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.trained ? "[" + s.text + "]" : s.text;
  return out;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const fs::path file = fs::temp_directory_path() / name;
  io::write_file_atomic(file.string(), text);
  return file.string();
}

tokenizer::Tokenizer quickstart_tokenizer() {
  return tokenizer::Tokenizer::from_pretrained(std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model");
}

const std::vector<data::Message> kChat = {
    {"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"}, {"user", "3+3?"}, {"assistant", "6"}};

TEST(SftRenderTest, AssistantTurnsAreTheDifferencesOfRenderedPrefixes) {
  const auto segments = data::render_conversation(kChat, chatml, /*assistant_only=*/true, kChat.size());
  EXPECT_EQ(trained_text(segments),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
            "[4<|im_end|>\n]<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n[6<|im_end|>\n]");
  for (const auto& s : data::render_conversation(kChat, chatml, /*assistant_only=*/false, kChat.size())) {
    EXPECT_TRUE(s.trained) << s.text;
  }
}

TEST(SftRenderTest, ConversationalCompletionIsTrainedFromItsFirstMessage) {
  const std::vector<data::Message> pc = {{"user", "2+2?"}, {"assistant", "4"}};
  EXPECT_EQ(trained_text(data::render_conversation(pc, chatml, true, /*completion_start=*/1)),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n[4<|im_end|>\n]");
}

TEST(SftRenderTest, ATemplateThatRewritesEarlierTurnsIsAnError) {
  // Renders the last user turn differently (as some reasoning templates drop earlier thoughts).
  const data::RenderChat unstable = [](const std::vector<data::Message>& m, bool gen) {
    return chatml(m, gen) + (m.size() % 2 == 0 ? "#" : "");
  };
  EXPECT_THAT(error_of([&] { data::render_conversation(kChat, unstable, true, kChat.size()); }),
              HasSubstr("renders the first 2 messages differently"));
}

TEST(SftRenderTest, PlainRecordsAreNotRendered) {
  data::SftRecord pc;
  pc.format = data::SftFormat::prompt_completion;
  pc.prompt = "Q: 2+2?\nA: ";
  pc.completion = "4";
  EXPECT_EQ(trained_text(data::render_record(pc, chatml, {})), "Q: 2+2?\nA: [4]");
  data::LossOptions all;
  all.completion_only_loss = false;
  EXPECT_EQ(trained_text(data::render_record(pc, chatml, all)), "[Q: 2+2?\nA: ][4]");
  data::SftRecord text;
  text.format = data::SftFormat::text;
  text.text = "a document";
  EXPECT_EQ(trained_text(data::render_record(text, chatml, {})), "[a document]");
}

TEST(SftLoadTest, EachRepositoryFileIsDetectedAndRead) {
  const std::vector<std::pair<std::string, data::SftFormat>> files = {
      {"messages.jsonl", data::SftFormat::messages},
      {"prompt_completion.jsonl", data::SftFormat::prompt_completion},
      {"prompt_completion_chat.jsonl", data::SftFormat::prompt_completion},
      {"text.jsonl", data::SftFormat::text},
      {"alpaca.jsonl", data::SftFormat::alpaca}};
  for (const auto& [file, format] : files) {
    const auto records = data::load_sft_jsonl(kSftDir + file);
    ASSERT_EQ(records.size(), 24u) << file;
    EXPECT_EQ(records[0].format, format) << file;
    EXPECT_EQ(records[1].line, 2);
  }
  const auto chat = data::load_sft_jsonl(kSftDir + "prompt_completion_chat.jsonl");
  EXPECT_TRUE(chat[0].conversational());
  EXPECT_EQ(chat[0].completion_start, 1u);
  data::SftOptions limited;
  limited.limit = 5;
  EXPECT_EQ(data::load_sft_jsonl(kSftDir + "text.jsonl", limited).size(), 5u);
}

TEST(SftLoadTest, AlpacaRecordsBecomeAUserAndAnAssistantTurn) {
  const std::string path = write_temp("ranktune_alpaca.jsonl",
                                      "{\"instruction\": \"Add.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n"
                                      "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"hi\"}\n"
                                      "{\"instruction\": \"Say yo.\", \"output\": \"yo\"}\n");
  const auto records = data::load_sft_jsonl(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].messages[0].content, "Add.\n\n2 and 3");
  EXPECT_EQ(records[1].messages[0].content, "Say hi.");
  EXPECT_EQ(records[2].messages[1].role, "assistant");
  EXPECT_EQ(records[2].messages[1].content, "yo");
  fs::remove(path);
}

TEST(SftLoadTest, BadRecordsNameFileLineAndField) {
  struct Case {
    std::string format, line2, expected;
  };
  std::vector<Case> cases = {
      {"messages", R"({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]})",
       "'messages[1].role': is 'bot'; expected system, user or assistant"},
      {"messages", R"({"messages": [{"role": "user"}]})", "'messages[0].content': missing field"},
      {"messages", R"({"messages": [{"role": "user", "content": "q"}]})", "has no assistant message"},
      {"messages", R"({"messages": "hello"})", "'messages': expected a list"},
      {"prompt_completion", R"({"prompt": "p"})", "'completion': missing field"},
      {"prompt_completion", R"({"prompt": "p", "completion": 3})", "'completion': expected a string"},
      {"text", R"({"text": ""})", "'text': is empty"},
      {"alpaca", R"({"instruction": "i"})", "'output': missing field"},
  };
  const std::map<std::string, std::string> good = {
      {"messages", R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"},
      {"prompt_completion", R"({"prompt": "p", "completion": "c"})"},
      {"text", R"({"text": "t"})"},
      {"alpaca", R"({"instruction": "i", "output": "o"})"},
      {"auto", R"({"text": "t"})"}};
  // auto: the format is told by the first record; the rest must follow it.
  const std::vector<Case> detected = {{"auto", R"({"prompt": "p", "completion": "c"})", "'text': missing field"}};
  for (const auto& c : detected) cases.push_back(c);
  for (const auto& c : cases) {
    const std::string path = write_temp("ranktune_bad_sft.jsonl", good.at(c.format) + "\n" + c.line2 + "\n");
    data::SftOptions o;  // "auto": no format given
    for (const auto f : {data::SftFormat::messages, data::SftFormat::prompt_completion, data::SftFormat::text,
                         data::SftFormat::alpaca}) {
      if (data::to_string(f) == c.format) o.format = f;
    }
    const std::string message = error_of([&] { data::load_sft_jsonl(path, o); });
    EXPECT_THAT(message, HasSubstr(path + ":2")) << c.line2;
    EXPECT_THAT(message, HasSubstr(c.expected)) << c.line2;
    fs::remove(path);
  }
  const std::string unknown = write_temp("ranktune_unknown_sft.jsonl", "{\"question\": \"q\", \"answer\": \"a\"}\n");
  EXPECT_THAT(error_of([&] { data::load_sft_jsonl(unknown); }),
              HasSubstr(unknown + ":1: 'data.format': cannot tell the data format: the record has none of the fields 'messages'"));
  fs::remove(unknown);
  EXPECT_THAT(error_of([] { data::load_sft_jsonl("/nonexistent/chats.jsonl"); }), HasSubstr("/nonexistent/chats.jsonl: file not found"));
}

TEST(SftTokenizeTest, LabelsAreExactlyTheTokensOfTrainedSegments) {
  const auto tok = quickstart_tokenizer();
  const std::vector<data::Segment> segments = {
      {"Q: 2+2?\nA: ", false}, {"4 apples.", true}, {"\nQ: and 3+3?\nA: ", false}, {"6 jars.", true}};
  data::TokenizeOptions o;
  o.max_length = 128;
  const auto examples = data::tokenize_segments({segments}, tok, o);
  ASSERT_EQ(examples.size(), 1u);
  std::vector<int64_t> ids, labels;
  for (size_t s = 0; s < segments.size(); ++s) {
    const auto piece = tok.encode(segments[s].text, /*add_special_tokens=*/s == 0);
    ids.insert(ids.end(), piece.begin(), piece.end());
    for (const int64_t id : piece) labels.push_back(segments[s].trained ? id : -100);
  }
  ids.push_back(*tok.eos_token_id());
  labels.push_back(*tok.eos_token_id());  // the last segment is trained: so is EOS
  EXPECT_EQ(examples[0].input_ids, ids);
  EXPECT_EQ(examples[0].labels, labels);
  EXPECT_EQ(ids.front(), *tok.bos_token_id());

  // The EOS after an untrained last segment (a conversation ending in a user turn) carries no label.
  const auto untrained_end = data::tokenize_segments({{{"a", true}, {"b", false}}}, tok, o);
  EXPECT_EQ(untrained_end[0].labels.back(), -100);
}

TEST(SftTokenizeTest, EveryFormatLabelsWhatTrlWouldTrainOn) {
  const auto tok = quickstart_tokenizer();
  data::TokenizeOptions o;
  o.max_length = 256;
  o.add_eos = false;
  // Each file's first record, rendered in ChatML; the labelled ids decode to the trained text.
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"messages.jsonl", "Lily has 22 + 11 = 33 apples.<|im_end|>\nThen 34.<|im_end|>\n"},
      {"prompt_completion.jsonl", "Lily has 22 + 11 = 33 apples."},
      {"prompt_completion_chat.jsonl", "Lily has 22 + 11 = 33 apples.<|im_end|>\n"},
      {"alpaca.jsonl", "Lily has 22 + 11 = 33 apples.<|im_end|>\n"},
  };
  for (const auto& [file, trained] : expected) {
    const auto record = data::load_sft_jsonl(kSftDir + file)[0];
    const auto segments = data::render_record(record, chatml, {});
    const auto example = data::tokenize_segments({segments}, tok, o)[0];
    std::vector<int64_t> labelled, trained_ids;
    for (const int64_t l : example.labels) {
      if (l != -100) labelled.push_back(l);
    }
    std::string joined;
    for (const auto& s : segments) {
      if (!s.trained) continue;
      joined += s.text;
      const auto ids = tok.encode(s.text, false);
      trained_ids.insert(trained_ids.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(joined, trained) << file;
    EXPECT_EQ(labelled, trained_ids) << file;
  }
  // text: every token.
  const auto text = data::load_sft_jsonl(kSftDir + "text.jsonl")[0];
  const auto example = data::tokenize_segments({data::render_record(text, chatml, {})}, tok, o)[0];
  EXPECT_EQ(example.labels, example.input_ids);
}

TEST(SftTokenizeTest, OverlongConversationsAreCutOrSkippedWhenNoLabelRemains) {
  const auto tok = quickstart_tokenizer();
  const std::vector<data::Segment> segments = {{"Q: how many apples does Lily have now?\nA: ", false}, {"33 apples.", true}};
  const auto prompt_length = static_cast<int64_t>(tok.encode(segments[0].text, true).size());
  data::TokenizeOptions o;
  o.overlong = data::Overlong::truncate;
  o.max_length = prompt_length + 1;
  data::TokenizeReport report;
  auto kept = data::tokenize_segments({segments}, tok, o, &report);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(static_cast<int64_t>(kept[0].input_ids.size()), prompt_length + 1);
  EXPECT_NE(kept[0].labels.back(), -100);
  EXPECT_EQ(report.truncated, 1);
  o.max_length = prompt_length;
  EXPECT_TRUE(data::tokenize_segments({segments}, tok, o, &report).empty());
  EXPECT_EQ(report.skipped, 1);
}

TEST(PackingDataTest, EveryExampleLandsOnceBestFitWithItsFirstLabelMasked) {
  std::vector<data::TokenizedExample> examples;
  for (const int64_t length : {7, 3, 5, 2, 6, 4, 1}) {
    data::TokenizedExample e;
    for (int64_t t = 0; t < length; ++t) e.input_ids.push_back(length * 100 + t);
    e.labels = e.input_ids;
    examples.push_back(e);
  }
  const auto packed = data::pack_examples(examples, 10);
  // Best fit decreasing: 7+3, 6+4, 5+2+1 (every sequence full but the last).
  ASSERT_EQ(packed.size(), 3u);
  EXPECT_EQ(packed[0].packed_lengths, (std::vector<int64_t>{7, 3}));
  EXPECT_EQ(packed[1].packed_lengths, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(packed[2].packed_lengths, (std::vector<int64_t>{5, 2, 1}));
  std::multiset<int64_t> seen;
  for (const auto& p : packed) {
    EXPECT_LE(p.input_ids.size(), 10u);
    size_t start = 0;
    for (const int64_t length : p.packed_lengths) {
      EXPECT_EQ(p.labels[start], -100);
      for (size_t t = start + 1; t < start + static_cast<size_t>(length); ++t) EXPECT_EQ(p.labels[t], p.input_ids[t]);
      start += static_cast<size_t>(length);
    }
    seen.insert(p.input_ids.begin(), p.input_ids.end());
  }
  std::multiset<int64_t> all;
  for (const auto& e : examples) all.insert(e.input_ids.begin(), e.input_ids.end());
  EXPECT_EQ(seen, all);
  // collate numbers each token's example in the attention mask; padding stays 0.
  const data::Batch batch = data::collate({&packed[2], &packed[0]}, 0);
  EXPECT_TRUE(torch::equal(batch.attention_mask[0], torch::tensor({1, 1, 1, 1, 1, 2, 2, 3, 0, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.attention_mask[1], torch::tensor({1, 1, 1, 1, 1, 1, 1, 2, 2, 2}, torch::kLong)));
  EXPECT_EQ(batch.loss_tokens, (5 - 1) + (2 - 1) + (1 - 1) + (7 - 1) + (3 - 1));
  EXPECT_THAT(error_of([&] { data::pack_examples(examples, 6); }), HasSubstr("cannot pack an example of 7 tokens into 6"));
}

}  // namespace
