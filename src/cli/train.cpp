// ranktune train [--nproc-per-node N] CONFIG.yaml [key.path=value ...] — fine-tune as a recipe says
// (with N > 1: N local data-parallel workers, docs/distributed.md).

#include "commands.h"
#include "launch.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/train/distributed.h"
#include "ranktune/train/trainer.h"

#include <iostream>

namespace ranktune::cli {

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Fine-tune a model with LoRA, DoRA or full training from a YAML recipe");
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
    int nproc_per_node = 1;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("config", o->config, "YAML recipe (see docs/config.md)")->required();
  cmd->add_option("overrides", o->overrides, "key.path=value overrides, e.g. train.lr=1e-4 train.max_steps=100");
  cmd->add_option("--nproc-per-node", o->nproc_per_node,
                  "data-parallel workers on this machine (train.batch_size is per worker; docs/distributed.md)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([o] {
    train::RunConfig config = train::RunConfig::load(o->config, o->overrides);  // checked once, before any worker
    if (o->nproc_per_node > 1) {
      std::vector<std::string> arguments = {"train", o->config};
      arguments.insert(arguments.end(), o->overrides.begin(), o->overrides.end());
      const int code = launch_local_workers(o->nproc_per_node, arguments);
      if (code != 0) throw ExitCode{code};
      return;
    }
    train::TrainerInputs inputs;
    inputs.evaluator = eval::make_gsm8k_evaluator(config.eval.options);
    train::Trainer trainer(std::move(config), std::move(inputs));
    trainer.setup();
    const train::TrainResult result = trainer.train();
    const auto worker = train::DistributedEnv::from_environment();
    if (!worker || worker->rank == 0) {  // data parallel: rank 0 reports for all
      std::cout << "status: " << result.status << "\nsteps: " << result.steps << "\nloss: " << result.first_loss << " -> "
                << result.last_loss << "\noutput: " << result.output_dir << std::endl;
    }
    // The conventional code of a run ended by a signal: 128 + its number (130 for Ctrl-C).
    if (result.status == "interrupted") throw ExitCode{result.signal > 0 ? 128 + result.signal : 130};
    if (result.status != "completed") throw ExitCode{1};
  });
}

}  // namespace ranktune::cli
