// ranktune merge --model DIR --adapter DIR --out DIR [--dtype D] [--quantize F] — a Hugging Face
// model directory with the adapter folded into the weights, stored in `D` (default: config.json's
// torch_dtype). With --quantize the base is quantized as it was in training (QLoRA), and the
// merge dequantizes it first; the rounding error of writing in `D` is reported.

#include "commands.h"
#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/model_directory.h"
#include "ranktune/peft/peft_model.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>

namespace ranktune::cli {
namespace {

namespace fs = std::filesystem;

// The merged weights are stored in the base model's dtype (config.json's torch_dtype).
torch::Dtype storage_dtype(const std::string& model_dir, const std::string& torch_dtype) {
  try {
    return parse_dtype(torch_dtype);
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{(fs::path(model_dir) / "config.json").string(), "torch_dtype", -1});
  }
}

// --out must be creatable: its nearest existing ancestor a directory. Checked before the model is
// loaded, so that a bad path costs nothing and leaves nothing behind.
void check_output_directory(const fs::path& out) {
  RANKTUNE_CHECK_CTX(!fs::exists(out), (ErrorContext{out.string(), "", -1}),
                     "already exists; choose a new output directory (nothing was written)");
  fs::path ancestor = fs::absolute(out).parent_path();
  while (!ancestor.empty() && !fs::exists(ancestor) && ancestor != ancestor.parent_path()) ancestor = ancestor.parent_path();
  RANKTUNE_CHECK_CTX(fs::is_directory(ancestor), (ErrorContext{out.string(), "", -1}),
                     "cannot be created: ", ancestor.string(), " is a ",
                     fs::is_regular_file(ancestor) ? "regular file" : "non-directory", ", not a directory (nothing was written)");
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Write a model directory with an adapter merged into its weights");
  struct Options {
    std::string model, adapter, out, dtype;
    QuantizeFlags quantize;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("--model", o->model, "base model directory")->required();
  cmd->add_option("--adapter", o->adapter, "adapter directory (PEFT format)")->required();
  cmd->add_option("--out", o->out, "output directory (must not exist yet)")->required();
  cmd->add_option("--dtype", o->dtype, "dtype of the written weights (default: config.json's torch_dtype)");
  add_quantize_flags(*cmd, o->quantize);
  cmd->callback([o] {
    check_output_directory(o->out);
    std::optional<torch::Dtype> requested;
    if (!o->dtype.empty()) {
      try {
        requested = parse_dtype(o->dtype);
      } catch (const Error& e) {
        throw Error(c10::str("--dtype: ", e.message(), " (nothing was written)"));
      }
    }
    LoadedModel loaded = load_model(o->model, o->adapter, std::nullopt, o->quantize);
    const torch::Dtype dtype = requested.value_or(storage_dtype(o->model, loaded.model->config().torch_dtype));
    loaded.adapters->merge_and_unload(/*safe=*/true);
    // Written beside the target and renamed at the end: a failure leaves no half-written model.
    const fs::path out(o->out);
    const fs::path staging = out.string() + ".tmp." + std::to_string(::getpid());
    std::error_code cause;
    fs::remove_all(staging, cause);
    fs::create_directories(staging, cause);
    RANKTUNE_CHECK_CTX(!cause, (ErrorContext{staging.string(), "", -1}), "cannot create the output directory: ",
                       cause.message(), " (nothing was written)");
    try {
      const model::RoundingError rounding =
          model::save_model_weights(*loaded.model, (staging / "model.safetensors").string(), dtype);
      std::cout << "weights written as " << dtype_name(dtype) << ": rounding error max |dw| = " << rounding.max_abs
                << ", rms(dw)/rms(w) = " << rounding.relative_rms;
      if (o->quantize.quantize != "none") {
        std::cout << " (after dequantizing the " << o->quantize.quantize
                  << " base: its quantisation error is in the weights too, docs/quantization.md)";
      }
      std::cout << std::endl;
      model::write_model_directory_files(o->model, staging.string(), *loaded.model, dtype);
      fs::rename(staging, out);
    } catch (...) {
      fs::remove_all(staging);
      throw;
    }
    std::cout << "merged " << o->adapter << " into " << o->model << " -> " << o->out << std::endl;
  });
}

}  // namespace ranktune::cli
