#pragma once
// The recipe's SFT data formats (data.format: messages, prompt_completion, text, alpaca, auto): the
// training and validation files read with data/sft.h, conversations rendered in the template's
// chat roles, tokenized with their loss masks. The GSM8K formats keep their own path in the trainer.

#include "ranktune/data/batching.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/config.h"

#include <vector>

namespace ranktune::train {

// True when data.format is one of data/sft.h's formats (or auto).
bool is_sft_format(const DataSection& data);

// The template's chat roles as a data::RenderChat.
data::RenderChat template_chat(const prompt::PromptTemplate& prompt_template);

struct SftData {
  std::vector<data::TokenizedExample> train, validation;
  data::TokenizeReport train_report;
};

// data.train_file (its first data.limit records), split by data.validation_size and `seed` unless
// data.eval_file is given (then its first data.validation_size records, 0: all).
SftData load_sft_data(const DataSection& data, uint64_t seed, const data::RenderChat& chat,
                      const tokenizer::Tokenizer& tokenizer, const data::TokenizeOptions& options);

}  // namespace ranktune::train
