#pragma once
// The recipe's SFT data formats (data.format: messages, prompt_completion, text, alpaca, auto):
// records read with data/sft.h under the recipe's data.*_field names, conversations rendered by the
// recipe template's render_chat (its chat roles, or the model's own chat template for
// format: chat) and tokenized with their loss masks. The GSM8K formats are session.cpp's.

#include "ranktune/data/batching.h"
#include "ranktune/data/sft.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/config.h"

#include <string>
#include <vector>

namespace ranktune::train {

// The first `limit` records of `path` (0: all), in data.format (data.sft_format() must hold).
std::vector<data::SftRecord> load_sft_records(const std::string& path, const DataSection& data, int64_t limit);

// The records as tokens. An error rendering one (a chat template whose shorter conversations are
// not prefixes of the longer ones) names `path` and the record's line.
std::vector<data::TokenizedExample> tokenize_sft_records(const std::vector<data::SftRecord>& records,
                                                         const std::string& path, const DataSection& data,
                                                         const prompt::PromptTemplate& prompt_template,
                                                         const tokenizer::Tokenizer& tokenizer,
                                                         const data::TokenizeOptions& options,
                                                         data::TokenizeReport* report = nullptr);

}  // namespace ranktune::train
