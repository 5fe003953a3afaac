#pragma once
// LoraConfig: Hugging Face PEFT's LoraConfig, field for field, with the same defaults and the same
// JSON form (adapter_config.json), so configs move between PEFT and ranktune unchanged.
//
//   auto cfg = ranktune::peft::LoraConfig().r(16).lora_alpha(32).target_modules({"q_proj", "v_proj"});

#include <torch/arg.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::peft {

// Which modules a config selects (PEFT's `Optional[Union[list[str], str]]`):
//   names      — a module matches if its qualified name equals an entry or ends in ".<entry>";
//   regex      — a module matches if the regex matches its whole qualified name;
//   all_linear — (target_modules only) every adaptable linear layer except the output head.
struct ModuleSelector {
  enum class Kind { none, names, regex, all_linear };
  Kind kind = Kind::none;
  std::vector<std::string> names;  // Kind::names
  std::string regex;               // Kind::regex

  ModuleSelector() = default;
  // Implicit on purpose: `.target_modules({"q_proj", "v_proj"})` and `.target_modules("all-linear")`
  // read like PEFT's list and str.
  ModuleSelector(std::vector<std::string> module_names);         // NOLINT
  ModuleSelector(std::initializer_list<std::string> module_names);  // NOLINT
  ModuleSelector(const char* regex_or_all_linear);                // NOLINT
  ModuleSelector(const std::string& regex_or_all_linear);         // NOLINT
  static ModuleSelector from_string(const std::string& regex_or_all_linear);

  bool empty() const { return kind == Kind::none; }
};

// How new adapter weights are initialised (PEFT's `init_lora_weights`).
struct LoraInit {
  enum class Kind {
    lora,      // true: A kaiming-uniform (a = sqrt(5)), B zeros — the adapter starts as a no-op
    off,       // false: A and B both keep nn.Linear's random init (for tests; output changes)
    gaussian,  // "gaussian": A ~ N(0, (1/r)^2), B zeros
    pissa,     // "pissa": A, B from the top-r SVD of W; W keeps the residual
    pissa_fast,  // "pissa_niter_K": the same with a randomized SVD of K power iterations
    olora,     // "olora": A, B from the QR decomposition of W; W keeps the residual
  };
  Kind kind = Kind::lora;
  int64_t niter = 0;  // pissa_fast only

  // Accepts "true", "false", "gaussian", "pissa", "pissa_niter_<K>", "olora"; throws naming the
  // field `init_lora_weights` and the allowed values otherwise.
  static LoraInit parse(const std::string& text);
  std::string to_string() const;  // the PEFT spelling ("true" and "false" for the booleans)
  bool rewrites_base_weight() const { return kind == Kind::pissa || kind == Kind::pissa_fast || kind == Kind::olora; }
};

enum class LoraBias { none, all, lora_only };

// Ordered: the first key that matches a module name wins.
using RankPattern = std::vector<std::pair<std::string, int64_t>>;
using AlphaPattern = std::vector<std::pair<std::string, double>>;

class LoraConfig {
  // Rank of the update B·A.
  TORCH_ARG(int64_t, r) = 8;
  // Scaling numerator: the update is multiplied by lora_alpha / r (or / sqrt(r) with use_rslora).
  TORCH_ARG(double, lora_alpha) = 8.0;
  // Dropout probability on the adapter's input (the base path never sees dropout).
  TORCH_ARG(double, lora_dropout) = 0.0;
  TORCH_ARG(ModuleSelector, target_modules) = {};
  TORCH_ARG(ModuleSelector, exclude_modules) = {};
  // Which biases train: none, every bias in the model, or those of adapted layers.
  TORCH_ARG(LoraBias, bias) = LoraBias::none;
  // Rank-stabilised LoRA: scaling alpha / sqrt(r).
  TORCH_ARG(bool, use_rslora) = false;
  // DoRA: a learned magnitude per output row on top of the LoRA direction.
  TORCH_ARG(bool, use_dora) = false;
  TORCH_ARG(LoraInit, init_lora_weights) = {};
  // The base weight is stored as [in, out] (GPT-2's Conv1D) instead of [out, in].
  TORCH_ARG(bool, fan_in_fan_out) = false;
  // Only adapt layers with these indices (empty: all). The index is found with layers_pattern.
  TORCH_ARG(std::optional<std::vector<int64_t>>, layers_to_transform) = std::nullopt;
  TORCH_ARG(std::optional<std::vector<std::string>>, layers_pattern) = std::nullopt;
  // Per-module rank and alpha: a key matches a module name by the regex (.*\.)?(key)$, first wins.
  TORCH_ARG(RankPattern, rank_pattern) = {};
  TORCH_ARG(AlphaPattern, alpha_pattern) = {};
  // Modules (name or dotted suffix) trained in full and saved with the adapter, e.g. "lm_head".
  TORCH_ARG(std::optional<std::vector<std::string>>, modules_to_save) = std::nullopt;
  // PEFT >= 0.18: modules_to_save on one end of a tied pair (input embeddings / output head)
  // trains one copy that both ends use, so they stay tied. Written to adapter_config.json only
  // when true (PEFT 0.12 rejects unknown fields).
  TORCH_ARG(bool, ensure_weight_tying) = false;
  TORCH_ARG(std::optional<std::string>, task_type) = std::nullopt;
  TORCH_ARG(std::optional<std::string>, base_model_name_or_path) = std::nullopt;
  TORCH_ARG(std::optional<std::string>, revision) = std::nullopt;
  TORCH_ARG(bool, inference_mode) = false;

 public:
  LoraConfig() = default;

  // Throws ranktune::Error naming the first invalid field, the value and what is allowed.
  void validate() const;

  // alpha / r, or alpha / sqrt(r) with use_rslora, for a given rank and alpha.
  double scaling_for(int64_t rank, double alpha) const;

  // adapter_config.json text: PEFT's fields, keys sorted, two-space indent (as PEFT writes it).
  std::string to_json() const;
  // Parses adapter_config.json text. Unknown fields are ignored with a warning, as PEFT does.
  // `source` names the file in errors.
  static LoraConfig from_json(const std::string& text, const std::string& source = "");
  // Reads `path`, or `path`/adapter_config.json when `path` is a directory.
  static LoraConfig load(const std::string& path);
  // Writes `dir`/adapter_config.json atomically (the directory is created if needed).
  void save(const std::string& dir) const;

  // PEFT fields ranktune carries but does not interpret (megatron_config, loftq_config, ...),
  // name -> JSON text, so that a loaded config is written back unchanged.
  std::map<std::string, std::string>& passthrough() { return passthrough_; }
  const std::map<std::string, std::string>& passthrough() const { return passthrough_; }

 private:
  std::map<std::string, std::string> passthrough_;
};

std::string to_string(LoraBias bias);

}  // namespace ranktune::peft
