#include "sft_data.h"

#include "ranktune/core/error.h"

namespace ranktune::train {
namespace {

std::optional<data::SftFormat> sft_format(DataFormat format) {
  switch (format) {
    case DataFormat::messages: return data::SftFormat::messages;
    case DataFormat::prompt_completion: return data::SftFormat::prompt_completion;
    case DataFormat::text: return data::SftFormat::text;
    case DataFormat::alpaca: return data::SftFormat::alpaca;
    case DataFormat::detect: return std::nullopt;
    case DataFormat::gsm8k:
    case DataFormat::jsonl: break;
  }
  throw Error("not an SFT data format (GSM8K records are data::load_jsonl's)", ErrorContext{"", "data.format", -1});
}

data::LossOptions loss_options(const DataSection& d) {
  data::LossOptions loss;
  loss.assistant_only_loss = d.assistant_only_loss;
  loss.completion_only_loss = d.completion_only_loss;
  return loss;
}

}  // namespace

std::vector<data::SftRecord> load_sft_records(const std::string& path, const DataSection& d, int64_t limit) {
  data::SftOptions o;
  o.format = sft_format(d.format);
  o.messages_field = d.messages_field;
  o.prompt_field = d.prompt_field;
  o.completion_field = d.completion_field;
  o.text_field = d.text_field;
  o.instruction_field = d.instruction_field;
  o.input_field = d.input_field;
  o.output_field = d.output_field;
  o.loss = loss_options(d);
  o.limit = limit;
  return data::load_sft_jsonl(path, o);
}

std::vector<data::TokenizedExample> tokenize_sft_records(const std::vector<data::SftRecord>& records,
                                                         const std::string& path, const DataSection& d,
                                                         const prompt::PromptTemplate& prompt_template,
                                                         const tokenizer::Tokenizer& tokenizer,
                                                         const data::TokenizeOptions& options,
                                                         data::TokenizeReport* report) {
  const data::RenderChat chat = [&prompt_template](const std::vector<data::Message>& messages, bool add_generation_prompt) {
    return prompt_template.render_chat(messages, add_generation_prompt);
  };
  const data::LossOptions loss = loss_options(d);
  std::vector<std::vector<data::Segment>> segments;
  segments.reserve(records.size());
  for (const auto& r : records) {
    try {
      segments.push_back(data::render_record(r, chat, loss));
    } catch (const Error& e) {
      throw e.with_context(ErrorContext{path, "", r.line});
    }
  }
  return data::tokenize_segments(segments, tokenizer, options, report);
}

}  // namespace ranktune::train
