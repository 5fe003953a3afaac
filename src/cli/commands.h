#pragma once
// The subcommands of the `ranktune` tool, one file each. Each adds itself to the app; its
// callback throws ranktune::Error on bad input, which main() reports with a non-zero exit.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace ranktune::model {
class CausalLMImpl;
}
namespace ranktune::peft {
class PeftModel;
}

namespace ranktune::cli {

void add_inspect_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_grpo_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_config_docs_command(CLI::App& app);
void add_download_command(CLI::App& app);

// Thrown by a command to end the program with this exit code after its own output.
struct ExitCode {
  int code;
};

// --quantize none|int8|nf4 and --double-quant: how the base's projection weights are stored
// (the recipe's model.quantize and model.double_quant).
struct QuantizeFlags {
  std::string quantize = "none";
  bool double_quant = false;
};
void add_quantize_flags(CLI::App& cmd, QuantizeFlags& flags);

// A model directory, with an adapter directory attached when `adapter_dir` is not empty. A model
// directory without weights (config.json only, like the quickstart's) is initialised from
// `init_seed`, or else from the model.init_seed recorded in the adapter's run (its config.yaml).
// `dtype` is the compute dtype (model.dtype's spellings: float32, bfloat16, ...).
struct LoadedModel {
  std::shared_ptr<model::CausalLMImpl> model;
  std::shared_ptr<peft::PeftModel> adapters;  // null without an adapter
};
LoadedModel load_model(const std::string& model_dir, const std::string& adapter_dir,
                       std::optional<int64_t> init_seed = std::nullopt, const QuantizeFlags& quantize = {},
                       const std::string& dtype = "float32");
// Whether a model directory (or hub name) holds weights (model.safetensors or a sharded index).
bool has_weights(const std::string& model_dir);

}  // namespace ranktune::cli
