#include "sft_data.h"

#include "ranktune/core/error.h"
#include "ranktune/data/examples.h"
#include "ranktune/data/sft.h"

namespace ranktune::train {
namespace {

data::SftOptions sft_options(const DataSection& d, int64_t limit) {
  data::SftOptions o;
  o.format = d.format;
  o.messages_field = d.messages_field;
  o.prompt_field = d.prompt_field;
  o.completion_field = d.completion_field;
  o.text_field = d.text_field;
  o.instruction_field = d.instruction_field;
  o.input_field = d.input_field;
  o.output_field = d.output_field;
  o.loss.assistant_only_loss = d.assistant_only_loss;
  o.loss.completion_only_loss = d.completion_only_loss;
  o.limit = limit;
  return o;
}

std::vector<std::vector<data::Segment>> render(const std::vector<data::SftRecord>& records, const data::SftOptions& o,
                                               const data::RenderChat& chat, const std::string& path) {
  std::vector<std::vector<data::Segment>> out;
  out.reserve(records.size());
  for (const auto& r : records) {
    try {
      out.push_back(data::render_record(r, chat, o.loss));
    } catch (const Error& e) {
      throw e.with_context(ErrorContext{path, "", r.line});
    }
  }
  return out;
}

}  // namespace

bool is_sft_format(const DataSection& data) { return data.format == "auto" || data::is_sft_format(data.format); }

data::RenderChat template_chat(const prompt::PromptTemplate& prompt_template) {
  return [&prompt_template](const std::vector<data::Message>& messages, bool add_generation_prompt) {
    std::vector<std::pair<std::string, std::string>> turns;
    turns.reserve(messages.size());
    for (const auto& m : messages) turns.emplace_back(m.role, m.content);
    return prompt_template.render_chat(turns, add_generation_prompt);
  };
}

SftData load_sft_data(const DataSection& d, uint64_t seed, const data::RenderChat& chat,
                      const tokenizer::Tokenizer& tokenizer, const data::TokenizeOptions& options) {
  const data::SftOptions o = sft_options(d, d.limit);
  std::vector<data::SftRecord> train = data::load_sft_jsonl(d.train_file, o), validation;
  if (!d.eval_file.empty()) {
    validation = data::load_sft_jsonl(d.eval_file, sft_options(d, d.validation_size));
  } else if (d.validation_size > 0) {
    const auto [kept, held] = data::split_indices(static_cast<int64_t>(train.size()), d.validation_size, seed);
    for (const int64_t i : held) validation.push_back(train[static_cast<size_t>(i)]);
    std::vector<data::SftRecord> fit;
    for (const int64_t i : kept) fit.push_back(std::move(train[static_cast<size_t>(i)]));
    train = std::move(fit);
  }
  SftData out;
  out.train = data::tokenize_segments(render(train, o, chat, d.train_file), tokenizer, options, &out.train_report);
  const std::string& validation_file = d.eval_file.empty() ? d.train_file : d.eval_file;
  out.validation = data::tokenize_segments(render(validation, o, chat, validation_file), tokenizer, options);
  return out;
}

}  // namespace ranktune::train
