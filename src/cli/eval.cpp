// ranktune eval CONFIG.yaml [key.path=value ...] — GSM8K accuracy of a model (with its adapter).

#include "commands.h"
#include "ranktune/core/error.h"
#include "ranktune/core/threads.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_download.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/trainer.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

namespace ranktune::cli {

namespace {

// The summary of a run with retrieved exemplars (its fields at the top, as without retrieval) and
// both rows, `exemplars.fixed` and `exemplars.retrieved`; the rows as a table on stderr.
std::string exemplar_comparison(const prompt::PromptTemplate& tmpl, const eval::EvalSummary& fixed,
                                const eval::EvalSummary& retrieved) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(retrieved.to_json());
  nlohmann::ordered_json rows;
  rows["fixed"] = nlohmann::ordered_json::parse(fixed.to_json());
  rows["fixed"]["shots"] = tmpl.few_shot().size();
  rows["retrieved"] = nlohmann::ordered_json::parse(retrieved.to_json());
  rows["retrieved"]["shots"] = tmpl.shots();
  j["exemplars"] = rows;
  std::fprintf(stderr, "%-10s %6s %9s %9s %8s\n", "exemplars", "shots", "strict", "flexible", "format");
  for (const char* row : {"fixed", "retrieved"}) {
    const auto& r = rows[row];
    std::fprintf(stderr, "%-10s %6lld %9.4f %9.4f %8.4f\n", row, static_cast<long long>(r["shots"].get<int64_t>()),
                 r["accuracy_strict"].get<double>(), r["accuracy_flexible"].get<double>(), r["format_rate"].get<double>());
  }
  return j.dump();
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a model (and adapter) on GSM8K-format questions from a YAML recipe");
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("config", o->config, "YAML recipe (see docs/config.md)")->required();
  cmd->add_option("overrides", o->overrides, "key.path=value overrides, e.g. eval.limit=100 eval.adapter=none");
  cmd->callback([o] {
    namespace fs = std::filesystem;
    const train::RunConfig config = train::RunConfig::load(o->config, o->overrides);
    configure_threads(static_cast<int>(config.train.threads));
    // Inputs first: nothing is written if any of them is missing or invalid.
    if (config.model.download) io::download_if_missing(config.model.path);
    const auto tokenizer = tokenizer::Tokenizer::from_pretrained(config.model.path);
    const auto prompt_template = prompt::PromptTemplate::load(config.template_name);
    const auto questions = train::evaluation_questions(config);
    std::string adapter = config.eval.adapter.empty() ? config.train.output_dir : config.eval.adapter;
    if (adapter == "none") adapter.clear();
    if (!adapter.empty() && config.eval.adapter.empty() && !fs::exists(fs::path(adapter) / "adapter_config.json")) {
      throw Error("no adapter here (train first, or set eval.adapter=DIR, or eval.adapter=none for the base model)",
                  ErrorContext{adapter, "eval.adapter", -1});
    }
    auto model = train::load_run_model(config.model);
    if (!adapter.empty()) {
      peft::PeftModel::from_pretrained(model, adapter, "default", false);
    }
    const std::string out_dir = config.eval.output_dir.empty() ? config.train.output_dir : config.eval.output_dir;
    fs::create_directories(out_dir);
    const auto summary = eval::evaluate_gsm8k(*model, tokenizer, prompt_template, questions, config.eval.options,
                                              (fs::path(out_dir) / "eval-predictions.jsonl").string());
    std::string report = summary.to_json();
    if (prompt_template.retrieves_exemplars()) {
      // Retrieved exemplars are compared with the template's fixed few_shot on the same questions.
      const auto fixed = eval::evaluate_gsm8k(*model, tokenizer, prompt_template.with_fixed_exemplars(), questions,
                                              config.eval.options,
                                              (fs::path(out_dir) / "eval-predictions-fixed.jsonl").string());
      report = exemplar_comparison(prompt_template, fixed, summary);
    }
    io::write_file_atomic((fs::path(out_dir) / "eval-summary.json").string(), report + "\n");
    std::cout << report << std::endl;
  });
}

void add_config_docs_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("config-docs", "Print the documentation of every recipe key (docs/config.md)");
  cmd->callback([] { std::cout << train::RunConfig::documentation(); });
}

}  // namespace ranktune::cli
