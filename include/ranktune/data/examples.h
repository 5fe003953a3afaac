#pragma once
// Reasoning examples as text: GSM8K's JSONL (question + worked answer ending in "#### N"), or any
// JSONL with a field mapping (so the same trainer learns from, say, a larger model's traces).
//
//   auto train = ranktune::data::load_gsm8k("../shared/data/gsm8k/train.jsonl");
//   auto [fit, held_out] = ranktune::data::split_validation(train, 200, /*seed=*/0);

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::data {

struct Example {
  std::string question;
  std::string rationale;  // the worked solution without the final answer line
  std::string answer;     // the final answer, e.g. "72"
  int64_t line = 0;       // 1-based line in the source file
};

// "Natalia sold 48/2 = <<48/2=24>>24 clips" -> "Natalia sold 48/2 = 24 clips".
std::string strip_calculator_annotations(const std::string& text);

// Splits a GSM8K answer at its last "####": rationale (trimmed) and final answer (trimmed).
// Returns nullopt when there is no "####".
std::optional<std::pair<std::string, std::string>> split_gsm8k_answer(const std::string& answer_text);

struct LoadOptions {
  // GSM8K format: the answer field holds "rationale\n#### N".
  bool gsm8k_answer = true;
  std::string question_field = "question";
  std::string answer_field = "answer";
  // With gsm8k_answer = false: the field holding the rationale (the answer field then holds only
  // the final answer).
  std::string rationale_field = "rationale";
  bool strip_calculator = false;
  // Keep at most this many examples (from the start of the file); 0 = all.
  int64_t limit = 0;
};

// Reads a JSONL file. A line that is not valid JSON, lacks a field, or (GSM8K) has no "####" is an
// error naming the file, the line and the field. Blank lines are skipped.
std::vector<Example> load_jsonl(const std::string& path, const LoadOptions& options = {});
inline std::vector<Example> load_gsm8k(const std::string& path, bool strip_calculator = false) {
  LoadOptions o;
  o.strip_calculator = strip_calculator;
  return load_jsonl(path, o);
}

// The split of split_validation for any list of n items: (kept indices, held-out indices), each
// ascending.
std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n, int64_t count, uint64_t seed,
                                                                    double fraction = 0.0);
// A seeded split: `count` examples (or `fraction` of them when count is 0) held out for
// validation, the rest kept; both keep their file order.
std::pair<std::vector<Example>, std::vector<Example>> split_validation(const std::vector<Example>& examples,
                                                                       int64_t count, uint64_t seed,
                                                                       double fraction = 0.0);

}  // namespace ranktune::data
