// JSONL training and evaluation data. The first byte picks the reader and its options; the rest is
// the file. Bit 4 clear: GSM8K records (data::load_jsonl; bit 0 separate fields, bit 1 calculator
// annotations stripped). Bit 4 set: SFT records (data::load_sft_jsonl; bits 5-7 the format, 0 and
// 5-7 detected; bits 0/1 turn assistant_only_loss/completion_only_loss off), each then rendered
// into segments as the trainer does (a ChatML-like RenderChat). Bits 2-3: the record limit.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/data/examples.h"
#include "ranktune/data/sft.h"

namespace {

using namespace ranktune;

size_t load_examples(uint8_t flags, const std::string& path) {
  data::LoadOptions options;
  options.gsm8k_answer = (flags & 1) == 0;
  options.strip_calculator = (flags & 2) != 0;
  options.limit = (flags >> 2) & 3;
  size_t bytes = 0;
  for (const auto& e : data::load_jsonl(path, options)) bytes += e.question.size() + e.rationale.size() + e.answer.size();
  return bytes;
}

std::string chatml(const std::vector<data::Message>& messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  return add_generation_prompt ? out + "<|im_start|>assistant\n" : out;
}

size_t load_sft_records(uint8_t flags, const std::string& path) {
  data::SftOptions options;
  const int format = flags >> 5;
  if (format >= 1 && format <= 4) options.format = static_cast<data::SftFormat>(format - 1);
  options.loss.assistant_only_loss = (flags & 1) == 0;
  options.loss.completion_only_loss = (flags & 2) == 0;
  options.limit = (flags >> 2) & 3;
  size_t bytes = 0;
  for (const auto& record : data::load_sft_jsonl(path, options)) {
    for (const auto& segment : data::render_record(record, chatml, options.loss)) bytes += segment.text.size();
  }
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = ranktune::fuzz::write_file("data.jsonl", data + 1, size - 1);
  try {
    const size_t bytes = (data[0] & 0x10) != 0 ? load_sft_records(data[0], path) : load_examples(data[0], path);
    if (bytes == SIZE_MAX) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
