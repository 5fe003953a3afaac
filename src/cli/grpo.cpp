// ranktune grpo CONFIG.yaml [key.path=value ...] — reinforcement learning with GRPO as a recipe says.

#include "commands.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/train/grpo.h"

#include <iostream>

namespace ranktune::cli {

void add_grpo_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("grpo", "Reinforcement learning with GRPO and rule-based rewards from a YAML recipe (docs/grpo.md)");
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("config", o->config, "YAML recipe with a grpo: section (see docs/grpo.md, docs/config.md)")->required();
  cmd->add_option("overrides", o->overrides, "key.path=value overrides, e.g. grpo.num_generations=4 train.max_steps=20");
  cmd->callback([o] {
    train::RunConfig config = train::RunConfig::load(o->config, o->overrides);
    train::TrainerInputs inputs;
    inputs.evaluator = eval::make_gsm8k_evaluator(config.eval.options);
    train::GrpoTrainer trainer(std::move(config), std::move(inputs));
    trainer.setup();
    const train::GrpoResult result = trainer.train();
    std::cout << "status: " << result.status << "\nsteps: " << result.steps << "\nreward: " << result.first_reward
              << " -> " << result.last_reward << "\noutput: " << result.output_dir << std::endl;
    if (result.status == "interrupted") throw ExitCode{result.signal > 0 ? 128 + result.signal : 130};
    if (result.status != "completed") throw ExitCode{1};
  });
}

}  // namespace ranktune::cli
