// eval/rejection_sampling: which samples each mode keeps, and a sampling run end to end with a
// fake scorer (what is written, the summary, errors). Suites: RejectionSampling*.

#include "ranktune/core/error.h"
#include "ranktune/eval/rejection_sampling.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/config.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/config.h"
#include "quickstart_questions.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

using namespace ranktune;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using eval::SampleKeep;
using eval::ScoredSample;

namespace {

namespace fs = std::filesystem;

std::vector<ScoredSample> samples(const std::vector<std::tuple<std::string, double, bool>>& rows) {
  std::vector<ScoredSample> out;
  for (const auto& [text, reward, correct] : rows) out.push_back({text, reward, correct});
  return out;
}

TEST(RejectionSamplingTest, EachModeKeepsTheRightSamples) {
  const auto s = samples({{"wrong", 0.5, false}, {"a", 1.0, true}, {"b", 1.5, true}, {"a", 1.0, true},
                          {"c", 1.5, true}, {"best but wrong", 9.0, false}});
  EXPECT_THAT(eval::select_samples(s, SampleKeep::all_correct), ElementsAre(1, 2, 4));  // the second "a" is a duplicate
  EXPECT_THAT(eval::select_samples(s, SampleKeep::best_of_k), ElementsAre(2));          // ties: the earliest
  EXPECT_THAT(eval::select_samples(s, SampleKeep::first_correct), ElementsAre(1));
  const auto none = samples({{"x", 0.5, false}, {"y", 0.0, false}});
  for (auto keep : {SampleKeep::all_correct, SampleKeep::best_of_k, SampleKeep::first_correct}) {
    EXPECT_TRUE(eval::select_samples(none, keep).empty());
  }
}

TEST(RejectionSamplingTest, TheRewardScorerUsesTheTemplatesRewards) {
  const auto tmpl = prompt::PromptTemplate::load("gsm8k-cot");
  data::Example e;
  e.question = "What is 6 * 7?";
  e.answer = "42";
  const auto strict = eval::reward_scorer(tmpl, prompt::AnswerMode::strict, 0.5);
  const ScoredSample good = strict("6 * 7 = 42\n#### 42\nQ: next", e);
  EXPECT_TRUE(good.correct);
  EXPECT_DOUBLE_EQ(good.reward, 1.5);
  EXPECT_EQ(good.completion, "6 * 7 = 42\n#### 42");  // cut at the stop string
  EXPECT_FALSE(strict("The answer is 42.", e).correct);
  EXPECT_TRUE(eval::reward_scorer(tmpl, prompt::AnswerMode::flexible, 0.5)("The answer is 42.", e).correct);
  EXPECT_FALSE(strict("6 * 7 = 41\n#### 41", e).correct);
}

struct SamplingRun {
  eval::SampleSummary summary;
  std::vector<nlohmann::json> records;
  int64_t scored = 0;
};

SamplingRun sample_quickstart(SampleKeep keep, const std::string& output) {
  const auto [lm, tok, tmpl, questions] = ranktune::testing::quickstart_questions();
  eval::SampleOptions o;
  o.num_samples = 4;
  o.keep = keep;
  o.batch_size = 5;  // batches cross question boundaries
  o.max_new_tokens = 6;
  o.temperature = 1.0;
  o.seed = 11;
  o.progress = false;
  SamplingRun run;
  // A fake scorer: a sample is "correct" when its text has an even length; the reward is the length.
  const eval::SampleScorer scorer = [&run](const std::string& completion, const data::Example&) {
    ++run.scored;
    return ScoredSample{completion, static_cast<double>(completion.size()), completion.size() % 2 == 0};
  };
  run.summary = eval::rejection_sample(*lm, tok, tmpl, questions, o, output, scorer);
  std::istringstream lines(io::read_file(output));
  for (std::string line; std::getline(lines, line);) run.records.push_back(nlohmann::json::parse(line));
  return run;
}

TEST(RejectionSamplingTest, ASamplingRunWritesTheKeptSamplesAsPromptCompletionRecords) {
  const fs::path out = fs::temp_directory_path() / "ranktune_rejection_samples.jsonl";
  const SamplingRun all = sample_quickstart(SampleKeep::all_correct, out.string());
  EXPECT_EQ(all.scored, 12);
  EXPECT_EQ(all.summary.questions, 3);
  EXPECT_EQ(all.summary.samples, 12);
  EXPECT_EQ(all.summary.kept, static_cast<int64_t>(all.records.size()));
  EXPECT_LE(all.summary.kept, all.summary.correct);
  EXPECT_DOUBLE_EQ(all.summary.pass_at_1, static_cast<double>(all.summary.correct) / 12.0);
  const auto tmpl = prompt::PromptTemplate::load("gsm8k-cot");
  for (const auto& r : all.records) {
    EXPECT_EQ(r.at("completion").get<std::string>().size() % 2, 0u);  // only "correct" samples
    EXPECT_EQ(r.at("prompt"), tmpl.render_prompt(r.at("question").get<std::string>()));
    EXPECT_LT(r.at("sample").get<int>(), 4);
    EXPECT_DOUBLE_EQ(r.at("reward").get<double>(), static_cast<double>(r.at("completion").get<std::string>().size()));
  }
  // The same seed samples the same completions: first_correct keeps one per question that has any.
  const SamplingRun first = sample_quickstart(SampleKeep::first_correct, out.string());
  EXPECT_EQ(first.summary.correct, all.summary.correct);
  EXPECT_EQ(first.summary.kept, first.summary.questions_kept);
  EXPECT_EQ(first.summary.questions_kept, all.summary.questions_kept);
  const SamplingRun best = sample_quickstart(SampleKeep::best_of_k, out.string());
  ASSERT_EQ(best.records.size(), first.records.size());
  for (size_t i = 0; i < best.records.size(); ++i) {
    EXPECT_GE(best.records[i].at("reward").get<double>(), first.records[i].at("reward").get<double>());
  }
  const auto summary = nlohmann::json::parse(all.summary.to_json());
  EXPECT_TRUE(summary.contains("pass_at_4") && summary.contains("pass_at_1") && summary.contains("seconds"));
  fs::remove(out);
}

TEST(RejectionSamplingTest, BadOptionsAreErrorsAndWriteNothing) {
  const std::string dir = std::string(RANKTUNE_SOURCE_DIR) + "/examples/gsm8k/quickstart/model";
  auto lm = model::create_causal_lm(model::ModelConfig::load(dir));
  const auto tok = tokenizer::Tokenizer::from_pretrained(dir);
  const auto tmpl = prompt::PromptTemplate::load("gsm8k-cot");
  std::vector<data::Example> questions(1);
  questions[0].question = "q";
  questions[0].answer = "1";
  eval::SampleOptions o;
  o.progress = false;
  const fs::path out = fs::temp_directory_path() / "ranktune_rejection_never.jsonl";
  fs::remove(out);
  EXPECT_THAT(ranktune::testing::error_of([&] { eval::rejection_sample(*lm, tok, tmpl, {}, o, out.string()); }),
              HasSubstr("no questions"));
  EXPECT_THAT(ranktune::testing::error_of([&] { eval::rejection_sample(*lm, tok, tmpl, questions, o, ""); }),
              HasSubstr("sample.output"));
  o.num_samples = 0;
  EXPECT_THAT(ranktune::testing::error_of([&] { eval::rejection_sample(*lm, tok, tmpl, questions, o, out.string()); }),
              HasSubstr("sample.num_samples"));
  EXPECT_FALSE(fs::exists(out));
}

TEST(RejectionSamplingTest, TheSampleSectionIsValidated) {
  const std::string base = "model: {path: m}\ndata: {train_file: t.jsonl}\nadapter: {target_modules: all-linear}\n";
  const auto c = train::RunConfig::parse(base + "sample: {keep: best_of_k, answer: flexible, num_samples: 8}\n", "r.yaml");
  EXPECT_EQ(c.sample.options.keep, SampleKeep::best_of_k);
  EXPECT_EQ(c.sample.options.answer, prompt::AnswerMode::flexible);
  EXPECT_EQ(c.sample.options.num_samples, 8);
  EXPECT_THAT(ranktune::testing::error_of([&] { train::RunConfig::parse(base + "sample: {keep: best}\n", "r.yaml"); }),
              HasSubstr("sample.keep"));
  EXPECT_THAT(ranktune::testing::error_of([&] { train::RunConfig::parse(base, "r.yaml", {"sample.num_samples=0"}); }),
              HasSubstr("sample.num_samples"));
  EXPECT_THAT(ranktune::testing::error_of([&] { train::RunConfig::parse(base, "r.yaml", {"sample.top_p=0"}); }),
              HasSubstr("sample.top_p"));
  EXPECT_THAT(ranktune::testing::error_of([&] { train::RunConfig::parse(base, "r.yaml", {"sample.answr=strict"}); }),
              HasSubstr("sample.answer"));
}

}  // namespace
