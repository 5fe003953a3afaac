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

#include <filesystem>
#include <iostream>

namespace ranktune::cli {

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
    io::write_file_atomic((fs::path(out_dir) / "eval-summary.json").string(), summary.to_json() + "\n");
    std::cout << summary.to_json() << std::endl;
  });
}

void add_config_docs_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("config-docs", "Print the documentation of every recipe key (docs/config.md)");
  cmd->callback([] { std::cout << train::RunConfig::documentation(); });
}

}  // namespace ranktune::cli
