// The data layer: GSM8K records, JSONL loading, validation splits, tokenized examples with loss
// masks, collation and the batch plan.

#include "ranktune/core/error.h"
#include "ranktune/data/batching.h"
#include "ranktune/data/examples.h"
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

TEST(DataTest, Gsm8kRecordsSplitAtTheFinalMarker) {
  const auto split = data::split_gsm8k_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72");
  ASSERT_TRUE(split);
  EXPECT_EQ(split->first, "Natalia sold 48/2 = <<48/2=24>>24 clips.");
  EXPECT_EQ(split->second, "72");
  EXPECT_EQ(data::strip_calculator_annotations(split->first), "Natalia sold 48/2 = 24 clips.");
  EXPECT_FALSE(data::split_gsm8k_answer("no marker"));
}

TEST(DataTest, BadJsonlNamesFileLineAndField) {
  const fs::path file = fs::temp_directory_path() / "ranktune_bad.jsonl";
  io::write_file_atomic(file.string(), "{\"question\": \"q\", \"answer\": \"r\\n#### 1\"}\n{\"question\": \"q2\"}\n");
  const std::string message = error_of([&] { data::load_gsm8k(file.string()); });
  EXPECT_THAT(message, HasSubstr(file.string() + ":2"));
  EXPECT_THAT(message, HasSubstr("'answer': is missing"));
  EXPECT_THAT(error_of([] { data::load_gsm8k("/nonexistent/train.jsonl"); }), HasSubstr("/nonexistent/train.jsonl: file not found"));
  fs::remove(file);
}

TEST(DataTest, ValidationSplitIsSeededAndDisjoint) {
  std::vector<data::Example> all(50);
  for (int i = 0; i < 50; ++i) all[static_cast<size_t>(i)].question = std::to_string(i);
  const auto [train_a, held_a] = data::split_validation(all, 10, 3);
  const auto [train_b, held_b] = data::split_validation(all, 10, 3);
  const auto [train_c, held_c] = data::split_validation(all, 10, 4);
  EXPECT_EQ(held_a.size(), 10u);
  EXPECT_EQ(train_a.size(), 40u);
  std::set<std::string> seen;
  for (const auto& e : train_a) seen.insert(e.question);
  for (const auto& e : held_a) EXPECT_EQ(seen.count(e.question), 0u);
  std::vector<std::string> qa, qb, qc;
  for (size_t i = 0; i < 10; ++i) {
    qa.push_back(held_a[i].question);
    qb.push_back(held_b[i].question);
    qc.push_back(held_c[i].question);
  }
  EXPECT_EQ(qa, qb);
  EXPECT_NE(qa, qc);
}

TEST(DataTest, LossOnlyOnTheResponseAndOverlongPolicies) {
  const auto tok = tokenizer::Tokenizer::from_pretrained(std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model");
  const std::vector<data::TextPair> pairs = {{"Q: 2+2?\nA:", " 4"}, {"Q: 3+3?\nA:", " 6, and then a much longer response than the first one"}};
  data::TokenizeOptions o;
  o.max_length = 64;
  data::TokenizeReport report;
  const auto examples = data::tokenize_pairs(pairs, tok, o, &report);
  ASSERT_EQ(examples.size(), 2u);
  const auto prompt = tok.encode(pairs[0].prompt, true);
  const auto response = tok.encode(pairs[0].response, false);
  const auto& e = examples[0];
  ASSERT_EQ(e.input_ids.size(), prompt.size() + response.size() + 1);  // + EOS
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(e.labels[i], -100);
  for (size_t i = prompt.size(); i < e.labels.size(); ++i) EXPECT_EQ(e.labels[i], e.input_ids[i]);
  EXPECT_EQ(e.input_ids.back(), *tok.eos_token_id());

  const int64_t short_limit = static_cast<int64_t>(prompt.size() + response.size() + 1);
  o.max_length = short_limit;
  data::tokenize_pairs(pairs, tok, o, &report);
  EXPECT_EQ(report.skipped, 1);
  o.overlong = data::Overlong::truncate;
  const auto truncated = data::tokenize_pairs(pairs, tok, o, &report);
  EXPECT_EQ(report.truncated, 1);
  EXPECT_EQ(static_cast<int64_t>(truncated[1].input_ids.size()), short_limit);
}

TEST(DataTest, CollatePadsRightAndCountsLossTokens) {
  data::TokenizedExample a{{1, 2, 3}, {-100, 2, 3}, 0}, b{{4, 5}, {-100, 5}, 1};
  const data::Batch batch = data::collate({&a, &b}, 0);
  EXPECT_EQ(batch.input_ids.sizes(), torch::IntArrayRef({2, 3}));
  EXPECT_EQ(batch.input_ids[1][2].item<int64_t>(), 0);
  EXPECT_EQ(batch.attention_mask[1][2].item<int64_t>(), 0);
  EXPECT_EQ(batch.labels[1][2].item<int64_t>(), -100);
  EXPECT_EQ(batch.tokens, 5);
  EXPECT_EQ(batch.loss_tokens, 3);
}

TEST(DataTest, BatchPlanIsAPermutationPerEpochAndReproducible) {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 103; ++i) lengths.push_back(10 + (i * 37) % 90);
  const data::BatchPlan plan(lengths, 8, 7);
  EXPECT_EQ(plan.batches_per_epoch(), 13);
  for (int64_t epoch : {0, 1}) {
    std::set<int64_t> seen;
    for (const auto& b : plan.epoch_batches(epoch)) {
      for (int64_t i : b) EXPECT_TRUE(seen.insert(i).second);
    }
    EXPECT_EQ(seen.size(), 103u);
  }
  EXPECT_EQ(plan.epoch_batches(1), data::BatchPlan(lengths, 8, 7).epoch_batches(1));
  EXPECT_NE(plan.epoch_batches(0), plan.epoch_batches(1));
  // Grouping by length keeps each batch's lengths close: less padding than a random order.
  auto padding = [&](const std::vector<std::vector<int64_t>>& batches) {
    int64_t pad = 0;
    for (const auto& b : batches) {
      int64_t longest = 0;
      for (int64_t i : b) longest = std::max(longest, lengths[static_cast<size_t>(i)]);
      for (int64_t i : b) pad += longest - lengths[static_cast<size_t>(i)];
    }
    return pad;
  };
  EXPECT_LT(padding(plan.epoch_batches(0)), padding(data::BatchPlan(lengths, 8, 7, false).epoch_batches(0)) / 2);
}

TEST(DataLoadTest, FieldMappingLimitBlankLinesAndCalculatorStripping) {
  const fs::path file = fs::temp_directory_path() / "ranktune_traces.jsonl";
  io::write_file_atomic(file.string(),
                        "{\"prompt\": \"q1\", \"trace\": \"  2 + 2 = <<2+2=4>>4 \\n\", \"final\": \" 4\\f\"}\n"
                        "\n"
                        "   \n"
                        "{\"prompt\": \"q2\", \"trace\": \"t2\", \"final\": \"5\"}\n"
                        "{\"prompt\": \"q3\", \"trace\": \"t3\", \"final\": \"6\"}\n");
  data::LoadOptions o;
  o.gsm8k_answer = false;
  o.question_field = "prompt";
  o.rationale_field = "trace";
  o.answer_field = "final";
  o.strip_calculator = true;
  o.limit = 2;
  const auto examples = data::load_jsonl(file.string(), o);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0].question, "q1");
  EXPECT_EQ(examples[0].rationale, "2 + 2 = 4");  // trimmed, then the annotation removed
  EXPECT_EQ(examples[0].answer, "4");
  EXPECT_EQ(examples[0].line, 1);
  EXPECT_EQ(examples[1].question, "q2");
  EXPECT_EQ(examples[1].line, 4);  // blank lines count in the numbering
  fs::remove(file);
}

TEST(DataLoadTest, Gsm8kAnswerWithoutTheMarkerAndEmptyFilesAreErrors) {
  const fs::path file = fs::temp_directory_path() / "ranktune_nomarker.jsonl";
  io::write_file_atomic(file.string(), "{\"question\": \"q\", \"answer\": \"r\\n#### 1\"}\n{\"question\": \"q\", \"answer\": \"42\"}\n");
  EXPECT_THAT(error_of([&] { data::load_gsm8k(file.string()); }),
              HasSubstr(file.string() + ":2: 'answer': has no '####' before the final answer"));
  io::write_file_atomic(file.string(), "{\"question\": \"q\", \"answer\": 7}\n");
  EXPECT_THAT(error_of([&] { data::load_gsm8k(file.string()); }), HasSubstr(":1: 'answer': expected a string, got integer 7"));
  io::write_file_atomic(file.string(), "\n\n");
  EXPECT_THAT(error_of([&] { data::load_gsm8k(file.string()); }), HasSubstr(file.string() + ": no examples in the file"));
  fs::remove(file);
}

TEST(DataLoadTest, CalculatorAnnotationsAndTheAnswerSplit) {
  EXPECT_EQ(data::strip_calculator_annotations("a <<1+1=2>>2 and <<2*3=6>>6."), "a 2 and 6.");
  EXPECT_EQ(data::strip_calculator_annotations("unclosed <<1+1=2"), "unclosed <<1+1=2");
  EXPECT_EQ(data::strip_calculator_annotations(""), "");
  // The last "####" splits; both parts are trimmed.
  const auto split = data::split_gsm8k_answer("a #### b\n#### 1,000 \n");
  ASSERT_TRUE(split);
  EXPECT_EQ(split->first, "a #### b");
  EXPECT_EQ(split->second, "1,000");
  // A split that would hold out everything is refused.
  EXPECT_THAT(error_of([] { data::split_validation(std::vector<data::Example>(3), 3, 0); }),
              HasSubstr("validation split of 3 examples leaves none of the 3 to train on"));
  EXPECT_EQ(data::split_validation(std::vector<data::Example>(10), 0, 0, 0.2).second.size(), 2u);
}

}  // namespace
