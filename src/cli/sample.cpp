// ranktune sample CONFIG.yaml [key.path=value ...] — rejection sampling and distillation: K sampled
// completions per question, scored with the template's rewards, the kept ones written as
// prompt/completion training data (docs/sampling.md).

#include "commands.h"
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/core/threads.h"
#include "ranktune/data/examples.h"
#include "ranktune/eval/rejection_sampling.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_download.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/trainer.h"

#include <filesystem>
#include <iostream>

namespace ranktune::cli {
namespace {

namespace fs = std::filesystem;

// samples.jsonl → samples.summary.json
std::string summary_path(const std::string& output) {
  const std::string stem = ends_with(output, ".jsonl") ? output.substr(0, output.size() - 6) : output;
  return stem + ".summary.json";
}

// The questions: sample.file, else data.train_file (GSM8K records with the recipe's field names).
std::vector<data::Example> sampling_questions(const train::RunConfig& config) {
  const train::SampleSection& s = config.sample;
  const std::string file = s.file.empty() ? config.data.train_file : s.file;
  if (s.file.empty() && config.data.sft_format()) {
    throw Error("data.train_file holds " + train::to_string(config.data.format) +
                    " records, which have no questions to sample for: set sample.file to GSM8K-format questions",
                ErrorContext{config.source, "sample.file", -1});
  }
  RANKTUNE_CHECK_CTX(!file.empty(), (ErrorContext{config.source, "sample.file", -1}),
                     "no questions: set sample.file (or data.train_file)");
  data::LoadOptions o;
  o.gsm8k_answer = !(s.file.empty() && config.data.format == train::DataFormat::jsonl);
  o.question_field = config.data.question_field;
  o.answer_field = config.data.answer_field;
  o.rationale_field = config.data.rationale_field;
  o.limit = s.limit;
  std::vector<data::Example> out = data::load_jsonl(file, o);
  RANKTUNE_CHECK_CTX(!out.empty(), (ErrorContext{file, "", -1}), "no questions in the file");
  return out;
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sample", "Rejection sampling / distillation: sample K completions per question, keep the correct ones as "
                "prompt/completion training data (sample.* keys, docs/sampling.md)");
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("config", o->config, "YAML recipe (see docs/config.md)")->required();
  cmd->add_option("overrides", o->overrides, "key.path=value overrides, e.g. sample.num_samples=8 sample.limit=100");
  cmd->callback([o] {
    const train::RunConfig config = train::RunConfig::load(o->config, o->overrides);
    const train::SampleSection& s = config.sample;
    configure_threads(static_cast<int>(config.train.threads));
    // Inputs first: nothing is written if any of them is missing or invalid.
    RANKTUNE_CHECK_CTX(!s.output.empty(), (ErrorContext{config.source, "sample.output", -1}),
                       "no output file: set sample.output (the JSONL of kept samples)");
    train::ModelSection model_section = config.model;
    if (!s.model.empty()) model_section.path = s.model;
    if (model_section.download) io::download_if_missing(model_section.path);
    const auto tokenizer = tokenizer::Tokenizer::from_pretrained(model_section.path);
    const auto prompt_template =
        prompt::PromptTemplate::load(s.template_name.empty() ? config.template_name : s.template_name);
    const auto questions = sampling_questions(config);
    const std::string adapter = s.adapter == "none" ? "" : s.adapter;
    if (!adapter.empty() && !fs::exists(fs::path(adapter) / "adapter_config.json")) {
      throw Error("no adapter here (no adapter_config.json)", ErrorContext{adapter, "sample.adapter", -1});
    }
    auto model = train::load_run_model(model_section);
    if (!adapter.empty()) peft::PeftModel::from_pretrained(model, adapter, "default", false);
    const fs::path parent = fs::path(s.output).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    const auto summary = eval::rejection_sample(*model, tokenizer, prompt_template, questions, s.options, s.output);
    io::write_file_atomic(summary_path(s.output), summary.to_json() + "\n");
    std::cout << summary.to_json() << std::endl;
  });
}

}  // namespace ranktune::cli
