#include "ranktune/data/examples.h"

#include "jsonl.h"
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <sstream>

namespace ranktune::data {

std::string strip_calculator_annotations(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find("<<", pos);
    if (open == std::string::npos) break;
    const size_t close = text.find(">>", open + 2);
    if (close == std::string::npos) break;
    out.append(text, pos, open - pos);
    pos = close + 2;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::optional<std::pair<std::string, std::string>> split_gsm8k_answer(const std::string& answer_text) {
  const size_t mark = answer_text.rfind("####");
  if (mark == std::string::npos) return std::nullopt;
  return std::make_pair(trim(answer_text.substr(0, mark)), trim(answer_text.substr(mark + 4)));
}

std::vector<Example> load_jsonl(const std::string& path, const LoadOptions& options) {
  std::vector<Example> out;
  for_each_jsonl_record(path, options.limit, [&](const io::ordered_json& record, int64_t line) {
    io::JsonFields fields(record, path);
    auto required = [&](const std::string& key) {
      if (!fields.has_value(key)) fields.fail(key, "is missing");
      return fields.get_string(key);
    };
    Example e;
    e.line = line;
    e.question = required(options.question_field);
    if (options.gsm8k_answer) {
      const auto split = split_gsm8k_answer(required(options.answer_field));
      if (!split) fields.fail(options.answer_field, "has no '####' before the final answer (GSM8K format)");
      std::tie(e.rationale, e.answer) = *split;
    } else {
      e.rationale = trim(required(options.rationale_field));
      e.answer = trim(required(options.answer_field));
    }
    if (options.strip_calculator) e.rationale = strip_calculator_annotations(e.rationale);
    out.push_back(std::move(e));
  });
  return out;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n, int64_t count, uint64_t seed, double fraction) {
  int64_t held = count > 0 ? count : static_cast<int64_t>(fraction * static_cast<double>(n));
  RANKTUNE_CHECK(held >= 0 && held < n, "validation split of ", held, " examples leaves none of the ", n, " to train on");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> is_held(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < held; ++i) is_held[static_cast<size_t>(order[static_cast<size_t>(i)])] = true;
  std::pair<std::vector<int64_t>, std::vector<int64_t>> out;
  for (int64_t i = 0; i < n; ++i) (is_held[static_cast<size_t>(i)] ? out.second : out.first).push_back(i);
  return out;
}

std::pair<std::vector<Example>, std::vector<Example>> split_validation(const std::vector<Example>& examples,
                                                                       int64_t count, uint64_t seed, double fraction) {
  const auto [kept, held] = split_indices(static_cast<int64_t>(examples.size()), count, seed, fraction);
  std::pair<std::vector<Example>, std::vector<Example>> out;
  for (const int64_t i : kept) out.first.push_back(examples[static_cast<size_t>(i)]);
  for (const int64_t i : held) out.second.push_back(examples[static_cast<size_t>(i)]);
  return out;
}

}  // namespace ranktune::data
