// ranktune inspect DIR — what a model directory holds, as JSON.

#include "commands.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

namespace ranktune::cli {

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Print a model directory's architecture, size and tokenizer as JSON");
  struct Options {
    std::string dir;
    std::optional<int64_t> init_seed;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("dir", o->dir, "model directory (config.json + safetensors)")->required();
  cmd->add_option("--init-seed", o->init_seed,
                  "seed of a model directory without weights (config.json only, like the quickstart's), as generate takes");
  cmd->callback([o] {
    const std::string& dir = o->dir;
    const model::ModelConfig config = model::ModelConfig::load(dir);
    // A directory without weights is initialised from --init-seed; without the flag the checkpoint
    // reader says what is missing (or refuses a pickle checkpoint).
    std::optional<io::SafetensorsCheckpoint> checkpoint;
    if (has_weights(dir) || !o->init_seed) checkpoint.emplace(io::SafetensorsCheckpoint::open(dir));
    // Count what the model will hold: checkpoint tensors the model uses (no buffers or tied duplicates).
    auto model = load_model(dir, "", checkpoint ? std::nullopt : o->init_seed).model;
    int64_t parameters = 0;
    for (const auto& p : model->parameters()) parameters += p.numel();
    std::map<std::string, int64_t> stored;  // dtype -> elements
    if (!checkpoint) stored["F32"] = parameters;  // initialised in fp32
    for (const auto& name : checkpoint ? checkpoint->names() : std::vector<std::string>{}) {
      const auto& info = checkpoint->info(name);
      int64_t n = 1;
      for (int64_t d : info.shape) n *= d;
      stored[info.dtype] += n;
    }
    std::string dtype;
    int64_t most = -1;
    for (const auto& [name, count] : stored) {
      if (count > most) std::tie(dtype, most) = std::tie(name, count);
    }
    nlohmann::ordered_json out;
    out["architecture"] = config.architecture;
    out["model_type"] = config.model_type;
    out["parameters"] = parameters;
    out["dtype"] = dtype;
    out["torch_dtype"] = config.torch_dtype;
    out["layers"] = config.num_hidden_layers;
    out["hidden_size"] = config.hidden_size;
    out["intermediate_size"] = config.intermediate_size;
    out["heads"] = config.num_attention_heads;
    out["kv_heads"] = config.num_key_value_heads;
    out["head_dim"] = config.head_dim;
    out["vocab_size"] = config.vocab_size;
    out["max_position_embeddings"] = config.max_position_embeddings;
    out["tie_word_embeddings"] = config.tie_word_embeddings;
    // fp32 (the compute dtype load_causal_lm used); MLA models cache their latent only.
    out["kv_cache_bytes_per_token"] = model->make_cache(1, 1).bytes_per_token();
    if (config.is_moe()) {
      const model::MoeConfig& moe = config.moe;
      const int64_t sparse = std::count(moe.sparse_layers.begin(), moe.sparse_layers.end(), true);
      // Each token runs through num_experts_per_tok of the routed experts (gate/up/down each).
      const int64_t idle = sparse * (moe.num_experts - moe.num_experts_per_tok) * 3 * config.hidden_size *
                           moe.expert_intermediate_size;
      out["experts"] = {{"routed", moe.num_experts},
                        {"per_token", moe.num_experts_per_tok},
                        {"sparse_layers", sparse},
                        {"active_parameters", parameters - idle}};
    }
    out["files"] = checkpoint ? checkpoint->files() : std::vector<std::string>{};
    if (!checkpoint) out["init_seed"] = *o->init_seed;
    const bool has_tokenizer = std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json") ||
                               std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.model");
    if (has_tokenizer) {
      const auto tok = tokenizer::Tokenizer::from_pretrained(dir);
      out["tokenizer"] = {{"kind", tok.kind()}, {"file", tok.source()}, {"vocab_size", tok.vocab_size()}};
    } else {
      out["tokenizer"] = nullptr;
    }
    std::cout << out.dump(2) << std::endl;
  });
}

}  // namespace ranktune::cli
