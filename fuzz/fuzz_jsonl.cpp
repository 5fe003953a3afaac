// JSONL training and evaluation data (data::load_jsonl). The first byte picks the options (GSM8K
// answers or separate fields, calculator annotations stripped or kept); the rest is the file.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/data/examples.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ranktune::data::LoadOptions options;
  options.gsm8k_answer = (data[0] & 1) == 0;
  options.strip_calculator = (data[0] & 2) != 0;
  options.limit = (data[0] >> 2) & 3;
  std::string path = ranktune::fuzz::write_file("data.jsonl", data + 1, size - 1);
  try {
    auto examples = ranktune::data::load_jsonl(path, options);
    size_t bytes = 0;
    for (const auto& e : examples) bytes += e.question.size() + e.rationale.size() + e.answer.size();
    if (bytes == SIZE_MAX) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
