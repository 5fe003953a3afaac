// Retrieval in the prompt layer: BM25 tokens, scores checked against hand-computed values, exclusions,
// ties, the on-disk cache, and templates with retrieved exemplars and a {context} slot.
// Suites: Bm25*, RetrievalTemplate*.

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/data/examples.h"
#include "ranktune/io/file.h"
#include "ranktune/prompt/retriever.h"
#include "ranktune/prompt/template.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using ranktune::prompt::bm25_tokens;
using ranktune::prompt::Bm25Index;
using ranktune::prompt::IndexSource;
using ranktune::prompt::PromptTemplate;
using ranktune::testing::error_of;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

std::vector<int64_t> indices(const std::vector<ranktune::prompt::ScoredDocument>& hits) {
  std::vector<int64_t> out;
  for (const auto& h : hits) out.push_back(h.index);
  return out;
}

// A fresh directory under the test's temporary directory, removed afterwards.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() / ("ranktune-retrieval-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Collects warnings while alive.
struct CapturedLog {
  std::vector<std::string> warnings;
  ranktune::LogSink previous;
  CapturedLog() {
    previous = ranktune::set_log_sink([this](ranktune::LogLevel level, const std::string& m) {
      if (level == ranktune::LogLevel::warning) warnings.push_back(m);
    });
  }
  ~CapturedLog() { ranktune::set_log_sink(previous); }
};

// d0 and d3 hold the same tokens (a tie); d1 repeats "apples"; d2 shares nothing with the query.
const std::vector<std::string> kFruit = {"apples and pears", "apples apples bananas", "cherry pie",
                                         "Apples, pears & plums!"};

}  // namespace

TEST(Bm25Tokens, LowercaseUnicodeWordsAndNumbers) {
  EXPECT_THAT(bm25_tokens("Äpfel, 1,000 APPLES cost $3.50; ΣΟΦΙΑ Москва"),
              ElementsAre("äpfel", "1000", "apples", "cost", "3.50", "σοφια", "москва"));
  EXPECT_THAT(bm25_tokens("48/2 = 24 clips in 12,5 days"), ElementsAre("48", "2", "24", "clips", "in", "12,5", "days"));
  EXPECT_THAT(bm25_tokens("  ...  "), ElementsAre());
  EXPECT_THAT(bm25_tokens("caf\xC3"), ElementsAre("caf"));  // a cut character is repaired, not a crash
}

TEST(Bm25Index, ScoresAreOkapiBm25ComputedByHand) {
  const Bm25Index index = Bm25Index::build(kFruit);
  // N = 4 documents of 3, 3, 2, 3 tokens: avgdl = 11/4. k1 = 1.5, b = 0.75.
  // n(apples) = 3 → idf = ln(1 + 1.5/3.5) = ln(10/7); n(pears) = 2 → idf = ln(1 + 2.5/2.5) = ln 2.
  // A 3-token document: K = k1·(1 − b + b·3/2.75) = 1.5·(0.25 + 0.75·3/2.75).
  const double K3 = 1.5 * (0.25 + 0.75 * 3.0 / 2.75);
  const double d0 = (std::log(10.0 / 7.0) + std::log(2.0)) * (1 * 2.5) / (1 + K3);  // f = 1 each
  const double d1 = std::log(10.0 / 7.0) * (2 * 2.5) / (2 + K3);                      // f(apples) = 2
  EXPECT_NEAR(d0, 1.0085627, 1e-6);
  EXPECT_NEAR(d1, 0.4950693, 1e-6);
  EXPECT_NEAR(index.average_length(), 2.75, 1e-12);
  EXPECT_NEAR(index.score("apples pears", 0), d0, 1e-12);
  EXPECT_NEAR(index.score("apples pears", 1), d1, 1e-12);
  EXPECT_EQ(index.score("apples pears", 2), 0.0);
  EXPECT_NEAR(index.score("apples pears", 3), d0, 1e-12);
  // A repeated query token counts each time.
  EXPECT_NEAR(index.score("apples apples", 1), 2 * d1, 1e-12);

  // Best first; d0 and d3 tie and keep corpus order; then d1; d2 (score 0) fills the fourth place.
  const auto hits = index.search("Pears? APPLES.", 4);
  EXPECT_THAT(indices(hits), ElementsAre(0, 3, 1, 2));
  EXPECT_NEAR(hits[0].score, d0, 1e-12);
  EXPECT_NEAR(hits[2].score, d1, 1e-12);
  EXPECT_EQ(hits[3].score, 0.0);
  EXPECT_THAT(indices(index.search("apples pears", 2)), ElementsAre(0, 3));
}

TEST(Bm25Index, OtherParametersChangeTheScore) {
  ranktune::prompt::Bm25Options o;
  o.k1 = 1.2;
  o.b = 0.0;  // no length normalisation: K = k1
  const Bm25Index index = Bm25Index::build(kFruit, o);
  EXPECT_NEAR(index.score("apples", 1), std::log(10.0 / 7.0) * 2 * 2.2 / (2 + 1.2), 1e-12);
}

TEST(Bm25Index, ExcludesTheQuestionItselfAndDuplicates) {
  const Bm25Index index = Bm25Index::build({"apples and pears", "apples  and\npears", "Apples and pears", "pears",
                                            "apples and pears plus more", "pears"});
  // The query's own text (also with other white space) is never returned; "Apples and pears"
  // differs in case, so it is another question. Of the two "pears", only the first.
  EXPECT_THAT(indices(index.search("apples and pears ", 10)), ElementsAre(2, 4, 3));
  // A question not in the corpus gets every distinct document: document 1 repeats document 0 but
  // for white space.
  EXPECT_THAT(indices(index.search("plums", 10)), ElementsAre(0, 2, 3, 4));
}

TEST(Bm25Index, FillsWithCorpusOrderWhenNothingMatches) {
  const Bm25Index index = Bm25Index::build(kFruit);
  EXPECT_THAT(indices(index.search("zebra", 2)), ElementsAre(0, 1));
  EXPECT_THAT(indices(index.search("cherry", 2)), ElementsAre(2, 0));
  EXPECT_THAT(error_of([&] { index.search("x", 0); }), HasSubstr("must be positive"));
}

TEST(Bm25Cache, HitStaleAndCorrupt) {
  ScratchDir dir;
  const std::string cache = dir.file("fruit.bm25");
  const Bm25Index built = Bm25Index::load_or_build(kFruit, cache);
  EXPECT_EQ(built.source(), IndexSource::cache_missing);
  ASSERT_TRUE(fs::exists(cache));

  const Bm25Index hit = Bm25Index::load_or_build(kFruit, cache);
  EXPECT_EQ(hit.source(), IndexSource::cache_hit);
  EXPECT_EQ(hit.score("apples pears", 0), built.score("apples pears", 0));
  EXPECT_EQ(indices(hit.search("apples pears", 4)), indices(built.search("apples pears", 4)));

  // Other documents: the cached index is stale, rebuilt (and replaced) without a warning.
  std::vector<std::string> edited = kFruit;
  edited[2] = "cherry pie with pears";
  {
    CapturedLog log;
    const Bm25Index stale = Bm25Index::load_or_build(edited, cache);
    EXPECT_EQ(stale.source(), IndexSource::cache_stale);
    EXPECT_GT(stale.score("pears", 2), 0.0);
    EXPECT_TRUE(log.warnings.empty());
  }
  EXPECT_EQ(Bm25Index::load_or_build(edited, cache).source(), IndexSource::cache_hit);

  // A truncated file and a flipped byte are corrupt: rebuilt with a warning naming the file.
  const std::string whole = ranktune::io::read_file(cache);
  for (const std::string& bad : {whole.substr(0, whole.size() / 2), std::string("garbage"),
                                 whole.substr(0, 40) + char(whole[40] ^ 1) + whole.substr(41)}) {
    ranktune::io::write_file_atomic(cache, bad);
    CapturedLog log;
    const Bm25Index rebuilt = Bm25Index::load_or_build(edited, cache);
    EXPECT_EQ(rebuilt.source(), IndexSource::cache_corrupt);
    EXPECT_EQ(rebuilt.score("pears", 2), Bm25Index::build(edited).score("pears", 2));
    ASSERT_EQ(log.warnings.size(), 1u);
    EXPECT_THAT(log.warnings[0], HasSubstr(cache));
    EXPECT_THAT(log.warnings[0], HasSubstr("corrupt BM25 index"));
    EXPECT_EQ(Bm25Index::load_or_build(edited, cache).source(), IndexSource::cache_hit);  // and rewritten
  }
}

TEST(Bm25Cache, UnwritableCacheIsAWarning) {
  ScratchDir dir;
  ranktune::io::write_file_atomic(dir.file("file"), "x");  // a file where the cache directory would go
  CapturedLog log;
  const Bm25Index index = Bm25Index::load_or_build(kFruit, dir.file("file") + "/sub/fruit.bm25");
  EXPECT_EQ(index.size(), 4);
  ASSERT_EQ(log.warnings.size(), 1u);
  EXPECT_THAT(log.warnings[0], HasSubstr("cannot cache the BM25 index"));
}

TEST(Bm25Cache, FileIsNamedAfterTheCorpusUnderTheCacheDir) {
  ScratchDir dir;
  ::setenv("RANKTUNE_CACHE_DIR", dir.path.c_str(), 1);
  const std::string a = ranktune::prompt::bm25_cache_file("some/train.jsonl", "question");
  const std::string b = ranktune::prompt::bm25_cache_file("some/train.jsonl", "text");
  ::unsetenv("RANKTUNE_CACHE_DIR");
  EXPECT_EQ(fs::path(a).parent_path(), dir.path / "bm25");
  EXPECT_THAT(fs::path(a).filename().string(), ::testing::StartsWith("train-"));
  EXPECT_NE(a, b);
}

TEST(Bm25Index, Gsm8kTrainQuestionsBuildFastAndSearchMatchesBruteForce) {
  RANKTUNE_REQUIRE_SHARED("data/gsm8k/train.jsonl");
  std::vector<std::string> questions;
  for (const auto& ex : ranktune::data::load_gsm8k(ranktune::testing::shared_dir() + "/data/gsm8k/train.jsonl")) {
    questions.push_back(ex.question);
  }
  ASSERT_EQ(questions.size(), 7473u);
  // ASCII text takes a path without the regex engine: the same tokens as the regex gives (a
  // non-ASCII word appended sends the whole text through the regex).
  for (const auto& q : questions) {
    std::vector<std::string> expected = bm25_tokens(q + " \xC3\xA9t\xC3\xA9");
    ASSERT_EQ(expected.back(), "\xC3\xA9t\xC3\xA9");
    expected.pop_back();
    ASSERT_EQ(bm25_tokens(q), expected) << q;
  }
  for (const std::string text : {"a1.5.6,000 x,y 1,00 9.", "x_y", "1,000,000.25 ab12cd 3rd"}) {
    std::vector<std::string> expected = bm25_tokens(text + " \xC3\xA9");
    expected.pop_back();
    EXPECT_EQ(bm25_tokens(text), expected) << text;
  }
  const auto start = std::chrono::steady_clock::now();
  const Bm25Index index = Bm25Index::build(questions);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("build_seconds", std::to_string(seconds));
  // Through the cache: a miss (built and written), then a hit (read).
  ScratchDir dir;
  const auto timed = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const Bm25Index i = Bm25Index::load_or_build(questions, dir.file("gsm8k.bm25"));
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return std::make_pair(i.source(), ms);
  };
  const auto [miss, miss_ms] = timed();
  const auto [hit, hit_ms] = timed();
  EXPECT_EQ(miss, IndexSource::cache_missing);
  EXPECT_EQ(hit, IndexSource::cache_hit);
  std::cout << "BM25 index of 7,473 GSM8K questions: built in " << seconds * 1000 << " ms; through the cache "
            << miss_ms << " ms (miss) and " << hit_ms << " ms (hit), " << fs::file_size(dir.file("gsm8k.bm25"))
            << " bytes\n";

  // The 8 exemplars for a training question are the 8 best other questions by score().
  const std::string& q = questions[17];
  const auto hits = index.search(q, 8);
  ASSERT_EQ(hits.size(), 8u);
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t d = 0; d < index.size(); ++d) {
    if (questions[static_cast<size_t>(d)] != q) all.push_back({-index.score(q, d), d});
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < hits.size(); ++i) {
    EXPECT_NE(hits[i].index, 17);
    EXPECT_DOUBLE_EQ(hits[i].score, -all[i].first) << i;
  }
}

// ---- templates --------------------------------------------------------------------------------

namespace {

const char* const kCorpus =
    R"({"question": "Tom has 3 apples and buys 2 more apples. How many apples?", "answer": "3 + 2 = <<3+2=5>>5\n#### 5"}
{"question": "A train travels 60 km per hour for 2 hours. How far?", "answer": "60 * 2 = 120\n#### 120"}
{"question": "Sara has 4 pears and eats 1 pear. How many pears are left?", "answer": "4 - 1 = 3\n#### 3"}
{"question": "How many apples do 2 boxes of 6 apples hold?", "answer": "2 * 6 = 12\n#### 12"}
)";

std::string exemplar_template(const std::string& exemplars) {
  return "prompt: \"Q: {question}\\nA:\"\nresponse: \" {rationale} The answer is {answer}.\"\n"
         "answer_pattern: 'The answer is (\\d+)'\n"
         "few_shot:\n  - {question: 'What is 1 + 1?', rationale: '1 + 1 = 2.', answer: 2}\n" + exemplars;
}

}  // namespace

TEST(RetrievalTemplate, ExemplarsAreTheNearestCorpusRecords) {
  ScratchDir dir;
  ::setenv("RANKTUNE_CACHE_DIR", dir.file("cache").c_str(), 1);
  ranktune::io::write_file_atomic(dir.file("corpus.jsonl"), kCorpus);
  ranktune::io::write_file_atomic(dir.file("t.yaml"), exemplar_template("exemplars: {corpus: corpus.jsonl, k: 2, retriever: bm25, strip_calculator: true}\n"));
  const PromptTemplate t = PromptTemplate::load(dir.file("t.yaml"));  // corpus relative to the template
  ::unsetenv("RANKTUNE_CACHE_DIR");
  EXPECT_TRUE(t.retrieves_exemplars());
  EXPECT_EQ(t.shots(), 2);
  // Record 0 is the question itself and is excluded. Record 3 shares the rare "apples" (and 2, how,
  // many); record 2 shares has, and, how, many; record 1 only 2 and how.
  const std::string q = "Tom has 3 apples and buys 2 more apples. How many apples?";
  const auto chosen = t.exemplars_for(q);
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0].question, "How many apples do 2 boxes of 6 apples hold?");
  EXPECT_EQ(chosen[1].question, "Sara has 4 pears and eats 1 pear. How many pears are left?");
  EXPECT_EQ(t.render_prompt(q),
            "Q: How many apples do 2 boxes of 6 apples hold?\nA: 2 * 6 = 12 The answer is 12.\n\n"
            "Q: Sara has 4 pears and eats 1 pear. How many pears are left?\nA: 4 - 1 = 3 The answer is 3.\n\n"
            "Q: " + q + "\nA:");
  // Calculator annotations are stripped when asked: record 0's rationale for another question.
  EXPECT_EQ(t.exemplars_for("apples")[0].rationale, "3 + 2 = 5");

  const PromptTemplate fixed = t.with_fixed_exemplars();
  EXPECT_FALSE(fixed.retrieves_exemplars());
  EXPECT_EQ(fixed.shots(), 1);
  EXPECT_EQ(fixed.render_prompt("Q?"), "Q: What is 1 + 1?\nA: 1 + 1 = 2. The answer is 2.\n\nQ: Q?\nA:");
}

TEST(RetrievalTemplate, BadExemplarsKeysAreErrorsNamingTheKey) {
  ScratchDir dir;
  ::setenv("RANKTUNE_CACHE_DIR", dir.file("cache").c_str(), 1);
  ranktune::io::write_file_atomic(dir.file("corpus.jsonl"), kCorpus);
  ranktune::io::write_file_atomic(dir.file("bad.jsonl"), "{\"question\": \"q\"}\n");
  const auto error = [&](const std::string& exemplars) {
    return error_of([&] { PromptTemplate::parse(exemplar_template(exemplars), dir.file("t.yaml")); });
  };
  EXPECT_THAT(error("exemplars: {corpus: corpus.jsonl, k: 0}\n"), HasSubstr("exemplars.k"));
  EXPECT_THAT(error("exemplars: {corpus: corpus.jsonl, k: -3}\n"), HasSubstr("must be a positive number"));
  EXPECT_THAT(error("exemplars: {k: 8}\n"), HasSubstr("exemplars.corpus"));
  EXPECT_THAT(error("exemplars: {corpus: missing.jsonl}\n"), HasSubstr("no such file"));
  EXPECT_THAT(error("exemplars: {corpus: corpus.jsonl, retriever: dense}\n"),
              HasSubstr("exemplars.retriever': unknown retriever 'dense'; available: bm25"));
  EXPECT_THAT(error("exemplars: {corpus: corpus.jsonl, kk: 8}\n"), HasSubstr("exemplars.kk"));
  EXPECT_THAT(error("exemplars: {corpus: bad.jsonl}\n"), HasSubstr("exemplars.corpus"));
  EXPECT_THAT(error("exemplars: {corpus: bad.jsonl}\n"), HasSubstr("answer"));
  ::unsetenv("RANKTUNE_CACHE_DIR");
}

TEST(RetrievalTemplate, ContextSlotGetsTheNearestDocuments) {
  ScratchDir dir;
  ::setenv("RANKTUNE_CACHE_DIR", dir.file("cache").c_str(), 1);
  ranktune::io::write_file_atomic(dir.file("notes.txt"),
                                  "The library opens at 9 am.\nIt closes at 5 pm.\n\n\n"
                                  "The pool opens at 7 am.\n\nParking costs 2 dollars per hour.\n");
  ranktune::io::write_file_atomic(dir.file("notes.jsonl"),
                                  "{\"body\": \"The pool opens at 7 am.\"}\n{\"body\": \"The library opens at 9 am.\"}\n");
  const std::string rest = "response: \"{rationale} #### {answer}\"\nanswer_pattern: '#### (\\d+)'\n";
  const PromptTemplate t = PromptTemplate::parse(
      "prompt: \"Context:\\n{context}\\n\\nQuestion: {question}\\nAnswer:\"\ncontext: {corpus: notes.txt, k: 2}\n" + rest,
      dir.file("t.yaml"));
  EXPECT_TRUE(t.retrieves_context());
  EXPECT_EQ(t.render_prompt("When does the library open?"),
            "Context:\nThe library opens at 9 am.\nIt closes at 5 pm.\n\nThe pool opens at 7 am.\n\n"
            "Question: When does the library open?\nAnswer:");
  const PromptTemplate j = PromptTemplate::parse(
      "prompt: \"{context}\\n{question}\"\ncontext: {corpus: notes.jsonl, k: 1, field: body, separator: ' | '}\n" + rest,
      dir.file("t.yaml"));
  EXPECT_EQ(j.render_prompt("pool hours?"), "The pool opens at 7 am.\npool hours?");
  EXPECT_EQ(j.context_for("library"), "The library opens at 9 am.");

  EXPECT_THAT(error_of([&] { PromptTemplate::parse("prompt: \"{context} {question}\"\n" + rest, dir.file("t.yaml")); }),
              HasSubstr("{context} needs the template key 'context'"));
  EXPECT_THAT(error_of([&] {
                PromptTemplate::parse("prompt: \"{question}\"\ncontext: {corpus: notes.txt}\n" + rest, dir.file("t.yaml"));
              }),
              HasSubstr("must contain the placeholder {context}"));
  EXPECT_THAT(error_of([&] {
                PromptTemplate::parse("prompt: \"{context}{question}\"\ncontext: {corpus: notes.jsonl, field: text}\n" + rest,
                                      dir.file("t.yaml"));
              }),
              HasSubstr("context.corpus"));
  ::unsetenv("RANKTUNE_CACHE_DIR");
}
