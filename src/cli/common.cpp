#include "commands.h"

#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "ranktune/core/quantized_weight.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/train/config.h"
#include "ranktune/train/trainer.h"

#include <filesystem>

namespace ranktune::cli {
namespace {

namespace fs = std::filesystem;

// The model.init_seed of the run that trained `adapter_dir` (its config.yaml), when that run's
// model.path is `model_dir`: the seed its random base was initialised from.
std::optional<int64_t> recorded_init_seed(const std::string& adapter_dir, const std::string& model_dir) {
  const fs::path recipe = fs::path(adapter_dir) / "config.yaml";
  if (adapter_dir.empty() || !fs::exists(recipe)) return std::nullopt;
  const train::RunConfig run = train::RunConfig::load(recipe.string());
  std::error_code ignored;
  if (run.model.path != model_dir && !fs::equivalent(run.model.path, model_dir, ignored)) return std::nullopt;
  return run.model.init_seed;
}

}  // namespace

void add_quantize_flags(CLI::App& cmd, QuantizeFlags& flags) {
  cmd.add_option("--quantize", flags.quantize,
                 "store the frozen projection weights quantized: int8 (per output channel) or nf4 (blocks of 64)")
      ->check(CLI::IsMember({"none", "int8", "nf4"}));
  cmd.add_flag("--double-quant", flags.double_quant, "with --quantize nf4: quantize the block scales to 8 bits too");
}

bool has_weights(const std::string& model_dir) {
  const fs::path local = io::resolve_pretrained(model_dir);
  return fs::exists(local / "model.safetensors") || fs::exists(local / "model.safetensors.index.json");
}

LoadedModel load_model(const std::string& model_dir, const std::string& adapter_dir, std::optional<int64_t> init_seed,
                       const QuantizeFlags& quantize, const std::string& dtype) {
  LoadedModel loaded;
  torch::Dtype compute_dtype;
  try {
    compute_dtype = parse_dtype(dtype);
  } catch (const Error& e) {
    throw Error(c10::str("--dtype: ", e.message()));
  }
  const QuantFormat format = parse_quant_format(quantize.quantize);
  RANKTUNE_CHECK(!quantize.double_quant || format == QuantFormat::nf4, "--double-quant needs --quantize nf4");
  if (!has_weights(model_dir) && fs::exists(fs::path(io::resolve_pretrained(model_dir)) / "config.json")) {
    // A base without weights (the quickstart's): initialised from its seed, as training did.
    if (!init_seed) init_seed = recorded_init_seed(adapter_dir, model_dir);
    RANKTUNE_CHECK_CTX(init_seed.has_value(), (ErrorContext{model_dir, "", -1}),
                       "has a config.json but no weights: pass --init-seed N, the model.init_seed it was initialised "
                       "from (the quickstart's is 0)");
    train::ModelSection section;
    section.path = model_dir;
    section.dtype = dtype;
    section.init_seed = *init_seed;
    section.quantize = quantize.quantize;
    section.double_quant = quantize.double_quant;
    loaded.model = train::load_run_model(section);
  } else {
    loaded.model = model::load_causal_lm(model_dir,
                                         model::LoadOptions().dtype(compute_dtype).quantize(format).double_quant(
                                             quantize.double_quant));
  }
  if (!adapter_dir.empty()) {
    loaded.adapters = std::make_shared<peft::PeftModel>(peft::PeftModel::from_pretrained(
        loaded.model, adapter_dir, "default", /*is_trainable=*/false));
  }
  return loaded;
}

}  // namespace ranktune::cli
