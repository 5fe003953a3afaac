#include "ranktune/model/model_directory.h"

#include "ranktune/core/dtype.h"
#include "ranktune/core/log.h"
#include "ranktune/io/file.h"
#include "ranktune/model/causal_lm.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iterator>

namespace ranktune::model {

namespace fs = std::filesystem;

namespace {

// Files that travel with the weights besides config.json: everything a tokenizer and generate need.
const char* const kCopiedFiles[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                    "tokenizer.model",        "special_tokens_map.json", "vocab.json",
                                    "merges.txt",             "added_tokens.json"};

}  // namespace

std::string config_json_for_weights(const std::string& model_dir, CausalLMImpl& model, torch::Dtype written) {
  const std::string text = io::read_file((fs::path(model_dir) / "config.json").string());
  const bool untied = model.config().tie_word_embeddings && !model.word_embeddings_tied();
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(text);
  // config.json's torch_dtype says what the weights are stored as (absent, transformers reads float32).
  const bool dtype_changed = config.contains("torch_dtype") ? config["torch_dtype"] != dtype_name(written)
                                                            : written != torch::kFloat32;
  if (!untied && !dtype_changed) return text;
  if (untied) {
    config["tie_word_embeddings"] = false;
    log_info("the model's output head has its own weight now: config.json says tie_word_embeddings: false");
  }
  config["torch_dtype"] = dtype_name(written);
  return config.dump(2) + "\n";
}

void write_model_directory_files(const std::string& model_dir, const std::string& out_dir, CausalLMImpl& model,
                                 torch::Dtype written) {
  io::write_file_atomic((fs::path(out_dir) / "config.json").string(), config_json_for_weights(model_dir, model, written));
  for (const char* name : kCopiedFiles) {
    const fs::path from = fs::path(model_dir) / name, to = fs::path(out_dir) / name;
    if (fs::exists(from)) fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  }
}

const std::vector<std::string>& model_directory_file_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out = {"config.json"};
    out.insert(out.end(), std::begin(kCopiedFiles), std::end(kCopiedFiles));
    return out;
  }();
  return names;
}

}  // namespace ranktune::model
