// eval/gsm8k_eval: the statistics of an evaluation, and an evaluation run end to end.

#include "ranktune/core/error.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "quickstart_questions.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace ranktune;
using ::testing::HasSubstr;

namespace {

namespace fs = std::filesystem;

TEST(EvalStatsTest, PassAtKIsTheUnbiasedEstimator) {
  EXPECT_DOUBLE_EQ(eval::pass_at_k(10, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(eval::pass_at_k(10, 10, 5), 1.0);
  EXPECT_NEAR(eval::pass_at_k(10, 3, 1), 0.3, 1e-12);
  // 1 - C(7,2)/C(10,2) = 1 - 21/45
  EXPECT_NEAR(eval::pass_at_k(10, 3, 2), 1.0 - 21.0 / 45.0, 1e-12);
  EXPECT_THROW(eval::pass_at_k(4, 1, 5), Error);
}

TEST(EvalStatsTest, MajorityVoteNormalisesNumbers) {
  using A = std::optional<std::string>;
  EXPECT_EQ(eval::majority_vote({A("1,000"), A("7"), A("1000"), std::nullopt, A("$1000.00")}), A("1,000"));
  EXPECT_EQ(eval::majority_vote({A("3"), A("4")}), A("3"));  // a tie goes to the first
  EXPECT_EQ(eval::majority_vote({std::nullopt}), std::nullopt);
}

// ---- evaluate_gsm8k on a small random model ---------------------------------------------------------

TEST(EvalRunTest, SummaryAndPredictionsCoverEveryQuestionAndSample) {
  const auto [lm, tok, tmpl, questions] = ranktune::testing::quickstart_questions();
  eval::EvalOptions o;
  o.batch_size = 2;
  o.max_new_tokens = 3;
  o.samples = 2;
  o.pass_at_k = {1, 2};
  o.progress = false;
  const fs::path predictions = fs::temp_directory_path() / "ranktune_eval_predictions.jsonl";
  fs::remove(predictions);
  const eval::EvalSummary s = eval::evaluate_gsm8k(*lm, tok, tmpl, questions, o, predictions.string());

  EXPECT_EQ(s.questions, 3);
  EXPECT_GT(s.generated_tokens, 0);
  EXPECT_LE(s.generated_tokens, 3 * 3 * (1 + 2));  // 3 questions × 3 tokens × (greedy + 2 samples)
  for (double v : {s.accuracy_strict, s.accuracy_flexible, s.format_rate}) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  ASSERT_TRUE(s.majority_accuracy.has_value());
  EXPECT_EQ(s.pass_at_k.size(), 2u);
  EXPECT_LE(s.pass_at_k.at(1), s.pass_at_k.at(2));  // pass@k cannot fall as k grows
  const auto summary = nlohmann::json::parse(s.to_json());
  EXPECT_EQ(summary.at("questions"), 3);
  EXPECT_TRUE(summary.contains("pass_at_2") && summary.contains("accuracy_majority"));

  std::vector<nlohmann::json> lines;
  std::istringstream in(io::read_file(predictions.string()));
  for (std::string row; std::getline(in, row);) lines.push_back(nlohmann::json::parse(row));
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].at("question"), questions[i].question);
    EXPECT_EQ(lines[i].at("gold"), questions[i].answer);
    EXPECT_EQ(lines[i].at("samples").size(), 2u);
  }
  fs::remove(predictions);
}

TEST(EvalRunTest, BadOptionsAreRefusedBeforeGenerating) {
  const std::string dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";
  auto lm = model::create_causal_lm(model::ModelConfig::load(dir));
  const auto tok = tokenizer::Tokenizer::from_pretrained(dir);
  const auto tmpl = prompt::PromptTemplate::load("gsm8k-cot");
  eval::EvalOptions o;
  o.progress = false;
  EXPECT_THAT(ranktune::testing::error_of([&] { eval::evaluate_gsm8k(*lm, tok, tmpl, {}, o); }), HasSubstr("nothing to evaluate"));
  o.samples = 2;
  o.pass_at_k = {3};
  EXPECT_THAT(ranktune::testing::error_of([&] { eval::evaluate_gsm8k(*lm, tok, tmpl, std::vector<data::Example>(1), o); }),
              HasSubstr("eval.pass_at_k: k=3 needs eval.samples >= k"));
}

}  // namespace
