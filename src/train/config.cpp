#include "ranktune/train/config.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/yaml.h"

#include <algorithm>
#include <functional>
#include <sstream>

namespace ranktune::train {
namespace {

// ---- the key table ---------------------------------------------------------------------------------
// Every key of a recipe: where it lives, its default (as YAML), what it means, the values allowed
// (for strings), and how it moves between YAML and RunConfig. Loading, overrides, defaults,
// to_yaml() and docs/config.md all come from this one table.

enum class Kind { string, integer, number, boolean, strings, integers, selector, init, pattern_ints, pattern_numbers };

struct Key {
  const char* path;
  Kind kind;
  const char* default_yaml;
  const char* help;
  std::vector<std::string> choices;
  std::function<void(RunConfig&, const YAML::Node&)> set;
  std::function<YAML::Node(const RunConfig&)> get;
};

template <typename T>
YAML::Node node_of(const T& value) {
  return YAML::Node(value);
}

YAML::Node selector_node(const peft::ModuleSelector& s) {
  switch (s.kind) {
    case peft::ModuleSelector::Kind::none: return YAML::Node(YAML::NodeType::Null);
    case peft::ModuleSelector::Kind::names: return YAML::Node(s.names);
    case peft::ModuleSelector::Kind::regex: return YAML::Node(s.regex);
    case peft::ModuleSelector::Kind::all_linear: return YAML::Node("all-linear");
  }
  return YAML::Node();
}

template <typename Pairs>
YAML::Node pattern_node(const Pairs& pairs) {
  YAML::Node n(YAML::NodeType::Map);
  for (const auto& [k, v] : pairs) n[k] = v;
  return n;
}

// Field binding helpers: a member of RunConfig read and written as YAML.
#define RT_SCALAR(member, type)                                                   \
  [](RunConfig& c, const YAML::Node& n) { c.member = n.as<type>(); },            \
      [](const RunConfig& c) { return node_of(c.member); }
#define RT_LIST(member, type)                                                     \
  [](RunConfig& c, const YAML::Node& n) { c.member = n.as<std::vector<type>>(); }, \
      [](const RunConfig& c) { return node_of(c.member); }
#define RT_LORA(field, type)                                                      \
  [](RunConfig& c, const YAML::Node& n) { c.adapter.lora.field(n.as<type>()); }, \
      [](const RunConfig& c) { return node_of(c.adapter.lora.field()); }

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      // model
      {"model.path", Kind::string, "null", "Hugging Face model directory (config.json, safetensors weights, tokenizer files). Without weights the model is initialised randomly from `model.init_seed`.", {}, RT_SCALAR(model.path, std::string)},
      {"model.dtype", Kind::string, "float32", "Compute dtype. bf16 is emulated on CPUs without AVX512-BF16 (2.5-3x slower than fp32 there).", {"float32", "bfloat16"}, RT_SCALAR(model.dtype, std::string)},
      {"model.init_seed", Kind::integer, "0", "Seed of the random initialisation when the model directory has no weights.", {}, RT_SCALAR(model.init_seed, int64_t)},
      // data
      {"data.train_file", Kind::string, "null", "JSONL training file (GSM8K: `question`, `answer` ending in `#### N`).", {}, RT_SCALAR(data.train_file, std::string)},
      {"data.eval_file", Kind::string, "\"\"", "JSONL validation file; empty: `data.validation_size` examples are held out of the training file.", {}, RT_SCALAR(data.eval_file, std::string)},
      {"data.format", Kind::string, "gsm8k", "`gsm8k`: the answer field holds the rationale and `#### N`; `jsonl`: separate rationale and answer fields.", {"gsm8k", "jsonl"}, RT_SCALAR(data.format, std::string)},
      {"data.question_field", Kind::string, "question", "JSON field with the question.", {}, RT_SCALAR(data.question_field, std::string)},
      {"data.rationale_field", Kind::string, "rationale", "JSON field with the worked solution (format `jsonl` only).", {}, RT_SCALAR(data.rationale_field, std::string)},
      {"data.answer_field", Kind::string, "answer", "JSON field with the answer.", {}, RT_SCALAR(data.answer_field, std::string)},
      {"data.strip_calculator", Kind::boolean, "false", "Remove GSM8K's calculator annotations `<<48/2=24>>` from the rationales.", {}, RT_SCALAR(data.strip_calculator, bool)},
      {"data.validation_size", Kind::integer, "200", "Examples held out for validation (seeded by `train.seed`); with `data.eval_file`, how many of its examples to use (0: all).", {}, RT_SCALAR(data.validation_size, int64_t)},
      {"data.max_length", Kind::integer, "512", "Longest tokenized example (prompt + response). Cost grows with it.", {}, RT_SCALAR(data.max_length, int64_t)},
      {"data.overlong", Kind::string, "skip", "What to do with longer examples: drop them, or cut the response.", {"skip", "truncate"}, RT_SCALAR(data.overlong, std::string)},
      {"data.limit", Kind::integer, "0", "Use only the first N examples of the training file (0: all).", {}, RT_SCALAR(data.limit, int64_t)},
      {"data.group_by_length", Kind::boolean, "true", "Batch examples of similar length together (less padding, faster).", {}, RT_SCALAR(data.group_by_length, bool)},
      // template
      {"template", Kind::string, "gsm8k-cot", "Chain-of-thought template: a name from examples/templates or a path to a YAML file (docs/templates.md).", {}, RT_SCALAR(template_name, std::string)},
      // adapter
      {"adapter.method", Kind::string, "lora", "`lora`, `dora` (LoRA + learned magnitudes; almost no extra cost here) or `full` fine-tuning (every weight trains; much more memory).", {"lora", "dora", "full"}, RT_SCALAR(adapter.method, std::string)},
      {"adapter.r", Kind::integer, "16", "LoRA rank. Trainable parameters and adapter compute grow linearly with it.", {}, RT_LORA(r, int64_t)},
      {"adapter.lora_alpha", Kind::number, "32", "Scaling numerator: updates are multiplied by lora_alpha / r (or / sqrt(r) with use_rslora).", {}, RT_LORA(lora_alpha, double)},
      {"adapter.lora_dropout", Kind::number, "0.05", "Dropout on the adapter input. Above 0 DoRA recomputes the base product on the dropped input (PEFT's path), costing one more GEMM per layer.", {}, RT_LORA(lora_dropout, double)},
      {"adapter.target_modules", Kind::selector, "all-linear", "Modules to adapt: a list of names or dotted suffixes, a regex string, or `all-linear`.", {},
       [](RunConfig& c, const YAML::Node& n) {
         c.adapter.lora.target_modules(n.IsSequence() ? peft::ModuleSelector(n.as<std::vector<std::string>>())
                                                      : peft::ModuleSelector::from_string(n.as<std::string>()));
       },
       [](const RunConfig& c) { return selector_node(c.adapter.lora.target_modules()); }},
      {"adapter.exclude_modules", Kind::selector, "null", "Modules never to adapt (same forms as target_modules, no `all-linear`).", {},
       [](RunConfig& c, const YAML::Node& n) {
         c.adapter.lora.exclude_modules(n.IsNull() ? peft::ModuleSelector()
                                        : n.IsSequence() ? peft::ModuleSelector(n.as<std::vector<std::string>>())
                                                         : peft::ModuleSelector::from_string(n.as<std::string>()));
       },
       [](const RunConfig& c) { return selector_node(c.adapter.lora.exclude_modules()); }},
      {"adapter.use_rslora", Kind::boolean, "false", "Rank-stabilised scaling lora_alpha / sqrt(r).", {}, RT_LORA(use_rslora, bool)},
      {"adapter.init_lora_weights", Kind::init, "true", "`true` (A kaiming, B zero), `false`, `gaussian`, `pissa`, `pissa_niter_K`, `olora`. PiSSA/OLoRA start from W's principal directions (an SVD/QR per layer at start-up).", {},
       [](RunConfig& c, const YAML::Node& n) { c.adapter.lora.init_lora_weights(peft::LoraInit::parse(n.as<std::string>())); },
       [](const RunConfig& c) {
         const auto& init = c.adapter.lora.init_lora_weights();
         if (init.kind == peft::LoraInit::Kind::lora) return YAML::Node(true);
         if (init.kind == peft::LoraInit::Kind::off) return YAML::Node(false);
         return YAML::Node(init.to_string());
       }},
      {"adapter.bias", Kind::string, "none", "Which biases train: none, all, or those of adapted layers.", {"none", "all", "lora_only"},
       [](RunConfig& c, const YAML::Node& n) {
         const std::string b = n.as<std::string>();
         c.adapter.lora.bias(b == "all" ? peft::LoraBias::all : b == "lora_only" ? peft::LoraBias::lora_only : peft::LoraBias::none);
       },
       [](const RunConfig& c) { return YAML::Node(peft::to_string(c.adapter.lora.bias())); }},
      {"adapter.modules_to_save", Kind::strings, "null", "Modules trained in full and saved with the adapter (e.g. [lm_head]).", {},
       [](RunConfig& c, const YAML::Node& n) {
         if (n.IsNull()) c.adapter.lora.modules_to_save(std::nullopt);
         else c.adapter.lora.modules_to_save(n.as<std::vector<std::string>>());
       },
       [](const RunConfig& c) {
         return c.adapter.lora.modules_to_save() ? YAML::Node(*c.adapter.lora.modules_to_save()) : YAML::Node(YAML::NodeType::Null);
       }},
      {"adapter.rank_pattern", Kind::pattern_ints, "{}", "Per-module rank: {module key: r}; a key matches names ending in it (regex `(.*\\.)?(key)$`).", {},
       [](RunConfig& c, const YAML::Node& n) {
         peft::RankPattern p;
         for (const auto& item : n) p.emplace_back(item.first.as<std::string>(), item.second.as<int64_t>());
         c.adapter.lora.rank_pattern(p);
       },
       [](const RunConfig& c) { return pattern_node(c.adapter.lora.rank_pattern()); }},
      {"adapter.alpha_pattern", Kind::pattern_numbers, "{}", "Per-module lora_alpha, as rank_pattern.", {},
       [](RunConfig& c, const YAML::Node& n) {
         peft::AlphaPattern p;
         for (const auto& item : n) p.emplace_back(item.first.as<std::string>(), item.second.as<double>());
         c.adapter.lora.alpha_pattern(p);
       },
       [](const RunConfig& c) { return pattern_node(c.adapter.lora.alpha_pattern()); }},
      {"adapter.layers_to_transform", Kind::integers, "null", "Only adapt layers with these indices.", {},
       [](RunConfig& c, const YAML::Node& n) {
         if (n.IsNull()) c.adapter.lora.layers_to_transform(std::nullopt);
         else c.adapter.lora.layers_to_transform(n.as<std::vector<int64_t>>());
       },
       [](const RunConfig& c) {
         return c.adapter.lora.layers_to_transform() ? YAML::Node(*c.adapter.lora.layers_to_transform())
                                                     : YAML::Node(YAML::NodeType::Null);
       }},
      // train
      {"train.output_dir", Kind::string, "runs/ranktune", "Where the adapter, checkpoints, metrics, curve, predictions and summary go.", {}, RT_SCALAR(train.output_dir, std::string)},
      {"train.seed", Kind::integer, "42", "Seed of adapter initialisation, dropout, data order and the validation split.", {}, RT_SCALAR(train.seed, uint64_t)},
      {"train.epochs", Kind::integer, "1", "Passes over the training data (ignored when max_steps > 0).", {}, RT_SCALAR(train.epochs, int64_t)},
      {"train.max_steps", Kind::integer, "0", "Optimizer steps to run; 0: epochs × batches / gradient_accumulation_steps.", {}, RT_SCALAR(train.max_steps, int64_t)},
      {"train.batch_size", Kind::integer, "8", "Examples per micro-batch. Activation memory grows linearly with it.", {}, RT_SCALAR(train.batch_size, int64_t)},
      {"train.gradient_accumulation_steps", Kind::integer, "1", "Micro-batches per optimizer step, each weighted by its share of the step's loss tokens: the gradient of one batch of batch_size × this examples, at the memory of one micro-batch.", {}, RT_SCALAR(train.gradient_accumulation_steps, int64_t)},
      {"train.lr", Kind::number, "2e-4", "Peak learning rate (AdamW).", {}, RT_SCALAR(train.lr, double)},
      {"train.lora_plus_ratio", Kind::number, "0", "LoRA+: learning rate of B and of 1-D adapter parameters = lr × this (0: off; the paper suggests 16).", {}, RT_SCALAR(train.lora_plus_ratio, double)},
      {"train.weight_decay", Kind::number, "0.0", "AdamW weight decay (never on biases, norms or DoRA magnitudes).", {}, RT_SCALAR(train.weight_decay, double)},
      {"train.adam_beta1", Kind::number, "0.9", "AdamW β1.", {}, RT_SCALAR(train.adam_beta1, double)},
      {"train.adam_beta2", Kind::number, "0.999", "AdamW β2.", {}, RT_SCALAR(train.adam_beta2, double)},
      {"train.adam_epsilon", Kind::number, "1e-8", "AdamW ε.", {}, RT_SCALAR(train.adam_epsilon, double)},
      {"train.schedule", Kind::string, "cosine", "Learning-rate schedule after warmup.", {"constant", "linear", "cosine"}, RT_SCALAR(train.schedule, std::string)},
      {"train.warmup_steps", Kind::integer, "0", "Linear warmup steps (overrides warmup_ratio when > 0).", {}, RT_SCALAR(train.warmup_steps, int64_t)},
      {"train.warmup_ratio", Kind::number, "0.03", "Warmup as a fraction of the total steps.", {}, RT_SCALAR(train.warmup_ratio, double)},
      {"train.max_grad_norm", Kind::number, "1.0", "Clip the gradient norm to this (0: no clipping).", {}, RT_SCALAR(train.max_grad_norm, double)},
      {"train.precision", Kind::string, "fp32", "`bf16` runs the forward pass under CPU autocast (useful with native bf16 hardware; slower than fp32 on this CPU).", {"fp32", "bf16"}, RT_SCALAR(train.precision, std::string)},
      {"train.gradient_checkpointing", Kind::boolean, "false", "Recompute each layer's activations in backward: much less memory for about one more forward pass of time.", {}, RT_SCALAR(train.gradient_checkpointing, bool)},
      {"train.log_every", Kind::integer, "10", "Optimizer steps between metrics rows and progress updates.", {}, RT_SCALAR(train.log_every, int64_t)},
      {"train.eval_every", Kind::integer, "0", "Steps between evaluations (validation loss, and accuracy on eval.during_training questions); 0: only at the end.", {}, RT_SCALAR(train.eval_every, int64_t)},
      {"train.save_every", Kind::integer, "0", "Steps between checkpoints (0: none besides Ctrl-C and the final adapter).", {}, RT_SCALAR(train.save_every, int64_t)},
      {"train.keep_last", Kind::integer, "2", "Checkpoints kept (older ones are deleted; 0 keeps all).", {}, RT_SCALAR(train.keep_last, int64_t)},
      {"train.resume_from", Kind::string, "\"\"", "A checkpoint directory, or `latest` (the newest in output_dir), to continue exactly from.", {}, RT_SCALAR(train.resume_from, std::string)},
      {"train.max_nan_steps", Kind::integer, "10", "Stop after this many steps in a row with a non-finite loss or gradient (each is skipped with a warning).", {}, RT_SCALAR(train.max_nan_steps, int64_t)},
      {"train.threads", Kind::integer, "0", "Intra-op threads (0: $RANKTUNE_NUM_THREADS when set, else all cores).", {}, RT_SCALAR(train.threads, int64_t)},
      // eval
      {"eval.file", Kind::string, "\"\"", "GSM8K-format questions for the final evaluation (empty: the validation examples).", {}, RT_SCALAR(eval.file, std::string)},
      {"eval.adapter", Kind::string, "\"\"", "For `ranktune eval`: the adapter directory (default: train.output_dir; `none` evaluates the base model).", {}, RT_SCALAR(eval.adapter, std::string)},
      {"eval.limit", Kind::integer, "0", "Evaluate only the first N questions (0: all).", {}, RT_SCALAR(eval.limit, int64_t)},
      {"eval.during_training", Kind::integer, "0", "Validation questions whose accuracy is measured at each train.eval_every (0: loss only).", {}, RT_SCALAR(eval.during_training, int64_t)},
      {"eval.batch_size", Kind::integer, "8", "Prompts generated together.", {}, RT_SCALAR(eval.options.batch_size, int64_t)},
      {"eval.max_new_tokens", Kind::integer, "256", "Longest completion (0 skips the final evaluation).", {}, RT_SCALAR(eval.options.max_new_tokens, int64_t)},
      {"eval.greedy", Kind::boolean, "true", "Greedy main completions (accuracy, format rate, predictions.jsonl); false samples them with eval.temperature / top_p / top_k.", {}, RT_SCALAR(eval.options.greedy, bool)},
      {"eval.repetition_penalty", Kind::number, "1.0", "transformers' repetition_penalty for every completion: > 1 discourages tokens already in the prompt or the completion (small models loop otherwise). 1: off.", {}, RT_SCALAR(eval.options.repetition_penalty, double)},
      {"eval.no_repeat_ngram_size", Kind::integer, "0", "transformers' no_repeat_ngram_size: no n-gram of this size occurs twice in a completion (breaks the loops small models fall into under greedy decoding). 0: off.", {}, RT_SCALAR(eval.options.no_repeat_ngram_size, int64_t)},
      {"eval.samples", Kind::integer, "0", "Sampled completions per question for self-consistency (maj@k) and pass@k (0: greedy only). Cost grows linearly.", {}, RT_SCALAR(eval.options.samples, int64_t)},
      {"eval.temperature", Kind::number, "0.7", "Sampling temperature for eval.samples (and the main completions when eval.greedy is false).", {}, RT_SCALAR(eval.options.temperature, double)},
      {"eval.top_p", Kind::number, "0.95", "Nucleus sampling for eval.samples.", {}, RT_SCALAR(eval.options.top_p, double)},
      {"eval.top_k", Kind::integer, "0", "Top-k sampling for eval.samples (0: off).", {}, RT_SCALAR(eval.options.top_k, int64_t)},
      {"eval.pass_at_k", Kind::integers, "[]", "Report pass@k for these k (each ≤ eval.samples).", {}, RT_LIST(eval.options.pass_at_k, int64_t)},
      {"eval.calculator", Kind::boolean, "false", "When the model writes `<<expr=`, insert the result (the GSM8K paper's calculator).", {}, RT_SCALAR(eval.options.calculator, bool)},
      {"eval.seed", Kind::integer, "0", "Seed of sampling.", {}, RT_SCALAR(eval.options.seed, uint64_t)},
      {"eval.output_dir", Kind::string, "\"\"", "For `ranktune eval`: where predictions.jsonl and eval-summary.json go (default: train.output_dir).", {}, RT_SCALAR(eval.output_dir, std::string)},
  };
  return table;
}

#undef RT_SCALAR
#undef RT_LIST
#undef RT_LORA

std::vector<std::string> all_paths() {
  std::vector<std::string> out;
  for (const auto& k : keys()) out.push_back(k.path);
  return out;
}

const Key* find_key(const std::string& path) {
  for (const auto& k : keys()) {
    if (path == k.path) return &k;
  }
  return nullptr;
}

// Checks that `node` is of the key's kind; returns an error message or "".
std::string type_problem(const Key& key, const YAML::Node& node) {
  auto scalar_as = [&](auto probe) {
    try {
      node.as<decltype(probe)>();
      return true;
    } catch (const YAML::Exception&) {
      return false;
    }
  };
  const bool null = node.IsNull();
  switch (key.kind) {
    case Kind::string:
      if (null && std::string(key.default_yaml) == "null") return "";
      if (!node.IsScalar()) return "expected a string, got a " + io::yaml_type_name(node);
      if (!key.choices.empty() &&
          std::find(key.choices.begin(), key.choices.end(), node.as<std::string>()) == key.choices.end()) {
        return "'" + node.as<std::string>() + "' is not allowed; allowed: " + join(key.choices);
      }
      return "";
    case Kind::integer:
      return node.IsScalar() && scalar_as(int64_t{}) ? "" : "expected an integer, got " + (node.IsScalar() ? "'" + node.as<std::string>() + "'" : "a " + io::yaml_type_name(node));
    case Kind::number:
      return node.IsScalar() && scalar_as(double{}) ? "" : "expected a number, got " + (node.IsScalar() ? "'" + node.as<std::string>() + "'" : "a " + io::yaml_type_name(node));
    case Kind::boolean:
      return node.IsScalar() && scalar_as(bool{}) ? "" : "expected true or false, got " + (node.IsScalar() ? "'" + node.as<std::string>() + "'" : "a " + io::yaml_type_name(node));
    case Kind::strings:
      if (null) return "";
      return node.IsSequence() && scalar_as(std::vector<std::string>{}) ? "" : "expected a list of strings";
    case Kind::integers:
      if (null) return "";
      return node.IsSequence() && scalar_as(std::vector<int64_t>{}) ? "" : "expected a list of integers";
    case Kind::selector:
      if (null) return "";
      if (node.IsScalar()) return "";
      return node.IsSequence() && scalar_as(std::vector<std::string>{}) ? "" : "expected a string (regex or all-linear) or a list of module names";
    case Kind::init:
      return node.IsScalar() ? "" : "expected true, false or a method name";
    case Kind::pattern_ints:
    case Kind::pattern_numbers: {
      if (null) return "";
      if (!node.IsMap()) return "expected a mapping of module key -> value";
      for (const auto& item : node) {
        try {
          if (key.kind == Kind::pattern_ints) item.second.as<int64_t>();
          else item.second.as<double>();
        } catch (const YAML::Exception&) {
          return "value of '" + item.first.as<std::string>() + "' must be " + (key.kind == Kind::pattern_ints ? "an integer" : "a number");
        }
      }
      return "";
    }
  }
  return "";
}

// Applies one value to the config, turning every failure into an error naming the key.
void apply(RunConfig& config, const Key& key, const YAML::Node& value, const ErrorContext& where) {
  const std::string problem = type_problem(key, value);
  if (!problem.empty()) throw Error(problem, where);
  try {
    if (value.IsNull() && key.kind == Kind::string) return;  // required string left unset
    key.set(config, value);
  } catch (const Error& e) {
    throw Error(e.message(), where);
  } catch (const YAML::Exception& e) {
    throw Error(std::string("invalid value: ") + e.what(), where);
  }
}

RunConfig defaults() {
  RunConfig c;
  for (const auto& k : keys()) {
    if (std::string(k.default_yaml) == "null" && k.kind == Kind::string) continue;
    k.set(c, YAML::Load(k.default_yaml));
  }
  return c;
}

// Every key that must be set in the file or an override.
void check_required(const RunConfig& c, const std::string& source) {
  if (c.model.path.empty()) throw Error("missing required key (the model directory)", ErrorContext{source, "model.path", -1});
  if (c.data.train_file.empty()) throw Error("missing required key (the training data)", ErrorContext{source, "data.train_file", -1});
}

void check_values(const RunConfig& c, const std::string& source) {
  auto fail = [&](const char* key, const std::string& message) { throw Error(message, ErrorContext{source, key, -1}); };
  const TrainSection& t = c.train;
  if (t.batch_size <= 0) fail("train.batch_size", "must be positive");
  if (t.gradient_accumulation_steps <= 0) fail("train.gradient_accumulation_steps", "must be positive");
  if (!(t.lr > 0)) fail("train.lr", "must be positive");
  if (t.epochs <= 0 && t.max_steps <= 0) fail("train.epochs", "must be positive (or set train.max_steps)");
  if (t.max_steps < 0) fail("train.max_steps", "must be >= 0");
  if (t.lora_plus_ratio < 0) fail("train.lora_plus_ratio", "must be >= 0");
  if (t.weight_decay < 0) fail("train.weight_decay", "must be >= 0");
  if (t.warmup_ratio < 0 || t.warmup_ratio >= 1) fail("train.warmup_ratio", "must be in [0, 1)");
  if (t.log_every <= 0) fail("train.log_every", "must be positive");
  if (t.eval_every < 0 || t.save_every < 0) fail(t.eval_every < 0 ? "train.eval_every" : "train.save_every", "must be >= 0");
  if (t.max_nan_steps <= 0) fail("train.max_nan_steps", "must be positive");
  if (c.data.max_length < 2) fail("data.max_length", "must be at least 2");
  if (c.data.validation_size < 0) fail("data.validation_size", "must be >= 0");
  const eval::EvalOptions& e = c.eval.options;
  if (e.batch_size <= 0) fail("eval.batch_size", "must be positive");
  if (e.max_new_tokens < 0) fail("eval.max_new_tokens", "must be >= 0");
  if (e.samples < 0) fail("eval.samples", "must be >= 0");
  if (!(e.repetition_penalty > 0)) fail("eval.repetition_penalty", "must be > 0");
  if (e.no_repeat_ngram_size < 0) fail("eval.no_repeat_ngram_size", "must be >= 0");
  for (int64_t k : e.pass_at_k) {
    if (k <= 0 || k > e.samples) fail("eval.pass_at_k", c10::str("k=", k, " needs 0 < k <= eval.samples (", e.samples, ")"));
  }
  if (c.adapter.method != "full") {
    try {
      c.adapter.lora.validate();
    } catch (const Error& e) {
      throw Error(e.message(), ErrorContext{source, "adapter." + e.context().key, -1});
    }
  }
}

// "a.b=value" -> ("a.b", parsed value).
std::pair<std::string, YAML::Node> parse_override(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error("override '" + text + "' is not of the form key.path=value (e.g. train.lr=1e-4)");
  }
  const std::string key = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  try {
    YAML::Node node = YAML::Load(value);
    if (!node.IsDefined()) node = YAML::Node(YAML::NodeType::Null);
    return {key, node};
  } catch (const YAML::Exception& e) {
    throw Error("override '" + text + "': the value is not valid YAML: " + e.msg);
  }
}

}  // namespace

// ---- loading -----------------------------------------------------------------------------------------

RunConfig RunConfig::parse(const std::string& yaml_text, const std::string& source, const std::vector<std::string>& overrides) {
  const YAML::Node root = io::parse_yaml(yaml_text, source);
  RunConfig config = defaults();
  config.source = source;
  const std::vector<std::string> sections = {"model", "data", "template", "adapter", "train", "eval"};
  io::YamlFields top(root, source);
  for (const auto& section : sections) {
    if (!top.has(section)) continue;
    if (section == "template") {
      const YAML::Node value = top.raw(section);
      apply(config, *find_key("template"), value, top.context(section));
      continue;
    }
    io::YamlFields fields = top.get_map(section);
    std::vector<std::string> valid;
    for (const auto& k : keys()) {
      const std::string path = k.path;
      if (path.rfind(section + ".", 0) != 0) continue;
      const std::string name = path.substr(section.size() + 1);
      valid.push_back(name);
      if (fields.has(name)) apply(config, k, fields.raw(name), fields.context(name));
    }
    fields.reject_unknown(valid);
  }
  top.reject_unknown(sections);
  for (const auto& text : overrides) {
    const auto [path, value] = parse_override(text);
    const Key* key = find_key(path);
    if (key == nullptr) {
      const std::string hint = nearest(path, all_paths());
      throw Error("unknown key in override '" + text + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"),
                  ErrorContext{"command line", path, -1});
    }
    apply(config, *key, value, ErrorContext{"command line", path, -1});
  }
  check_required(config, source);
  check_values(config, source);
  return config;
}

RunConfig RunConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  return parse(io::read_file(path), path, overrides);
}

std::string RunConfig::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string open_section;
  for (const auto& k : keys()) {
    const std::string path = k.path;
    const size_t dot = path.find('.');
    const std::string section = dot == std::string::npos ? "" : path.substr(0, dot);
    if (section != open_section) {
      if (!open_section.empty()) out << YAML::EndMap;
      if (!section.empty()) out << YAML::Key << section << YAML::Value << YAML::BeginMap;
      open_section = section;
    }
    out << YAML::Key << (dot == std::string::npos ? path : path.substr(dot + 1)) << YAML::Value << k.get(*this);
  }
  if (!open_section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string RunConfig::documentation() {
  std::ostringstream md;
  md << "# Configuration keys\n\n"
     << "`ranktune train CONFIG.yaml [key.path=value ...]` and `ranktune eval CONFIG.yaml [...]` read a YAML recipe with\n"
     << "the sections below. Every key is checked: an unknown or misspelt key is an error naming the file, the line\n"
     << "and the key, with the nearest valid key suggested; a wrong type or a value outside the allowed set names\n"
     << "the key. Overrides on the command line use the same dotted paths and YAML values\n"
     << "(`train.lr=1e-4`, `adapter.target_modules=[q_proj,v_proj]`). Relative paths are relative to the current\n"
     << "directory. The run directory gets the effective configuration as `config.yaml`.\n\n"
     << "This page is generated from the key table in `src/train/config.cpp` (`ranktune config-docs`); a test\n"
     << "checks that it is current.\n";
  std::string open_section = "-";
  for (const auto& k : keys()) {
    const std::string path = k.path;
    const size_t dot = path.find('.');
    const std::string section = dot == std::string::npos ? path : path.substr(0, dot);
    if (section != open_section) {
      md << "\n## `" << section << "`\n\n| key | default | meaning |\n| --- | --- | --- |\n";
      open_section = section;
    }
    std::string meaning = k.help;
    if (!k.choices.empty()) meaning += " Allowed: " + join(k.choices) + ".";
    std::string def = k.default_yaml;
    if (def == "null" && k.kind == Kind::string) def = "(required)";
    md << "| `" << path << "` | `" << def << "` | " << meaning << " |\n";
  }
  return md.str();
}

}  // namespace ranktune::train
