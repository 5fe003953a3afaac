// tokenizer.json (Tokenizer::from_pretrained on the file): model, normalizer, pre-tokenizer,
// post-processor, decoder and added tokens. A tokenizer that loads then encodes and decodes a fixed
// text, so the parsed tables are exercised too.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = ranktune::fuzz::write_file("tokenizer.json", data, size);
  try {
    auto tokenizer = ranktune::tokenizer::Tokenizer::from_pretrained(path);
    auto ids = tokenizer.encode("Hello world! 12+3=15 \xc3\xa9t\xc3\xa9 <s>", true);
    std::string text = tokenizer.decode(ids);
    if (text.size() == SIZE_MAX || tokenizer.vocab_size() < 0) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
