#include "ranktune/train/config.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/io/yaml.h"
#include "ranktune/peft/lora_config_fields.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

namespace ranktune::train {
namespace {

const char* const kCommandLine = "command line";  // where overrides come from, in errors

// ---- the key table ---------------------------------------------------------------------------------
// Every key of a recipe: where it lives, its default (as YAML), what it means, the values allowed
// (for strings), and how it moves between YAML and RunConfig. Loading, overrides, defaults,
// to_yaml() and docs/config.md all come from this one table. The adapter.<field> rows come from
// LoraConfig's field table (peft/lora_config_fields.h): its defaults, help and JSON checks.

enum class Kind { string, integer, number, boolean, strings, integers, numbers, selector, init, pattern_ints, pattern_numbers };

struct Key {
  std::string path;
  Kind kind;
  std::string default_yaml;
  std::string help;
  std::vector<std::string> choices;
  std::function<void(RunConfig&, const YAML::Node&)> set;
  std::function<YAML::Node(const RunConfig&)> get;
};

template <typename T>
YAML::Node node_of(const T& value) {
  return YAML::Node(value);
}

// The names of an enum's values, in the enum's order: the key's choices, parsed once on loading.
const std::vector<std::string> kAdapterMethods = {"lora", "dora", "full"};
const std::vector<std::string> kSchedules = {"constant", "linear", "cosine"};
const std::vector<std::string> kPrecisions = {"fp32", "bf16", "auto"};
const std::vector<std::string> kSampleKeep = {"all_correct", "best_of_k", "first_correct"};
const std::vector<std::string> kAnswerModes = {"strict", "flexible"};  // prompt::AnswerMode's order
const std::vector<std::string> kGrpoLossTypes = {"grpo", "bnpo", "dr_grpo", "dapo"};
const std::vector<std::string> kRewardScalings = {"group", "batch", "none"};
const std::vector<std::string> kDataFormats = {"gsm8k", "jsonl", "messages", "prompt_completion", "text", "alpaca", "auto"};

template <typename E>
E enum_of(const std::vector<std::string>& names, const std::string& name) {
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) throw Error("'" + name + "' is not allowed; allowed: " + join(names));
  return static_cast<E>(it - names.begin());
}

// Field binding helpers: a member of RunConfig read and written as YAML.
#define RT_SCALAR(member, type)                                                   \
  [](RunConfig& c, const YAML::Node& n) { c.member = n.as<type>(); },            \
      [](const RunConfig& c) { return node_of(c.member); }
// An enum member read from and written as one of the key's choices, in the enum's order (the
// choices are checked before `set` runs, so the lookup always finds the name).
#define RT_ENUM(member, type, names)                                                         \
  [](RunConfig& c, const YAML::Node& n) { c.member = enum_of<type>(names, n.as<std::string>()); }, \
      [](const RunConfig& c) { return node_of(names[static_cast<size_t>(c.member)]); }
#define RT_LIST(member, type)                                                                       \
  [](RunConfig& c, const YAML::Node& n) {                                                           \
    c.member = n.IsSequence() ? n.as<std::vector<type>>() : std::vector<type>{n.as<type>()};        \
  },                                                                                                \
      [](const RunConfig& c) { return node_of(c.member); }

// ---- adapter.<field>: LoraConfig's field table as recipe keys ----------------------------------------

using json = nlohmann::ordered_json;  // keeps a pattern's keys in recipe order (the first match wins)
using LoraField = peft::LoraConfigField;

Kind kind_of(LoraField::Kind kind) {
  switch (kind) {
    case LoraField::Kind::integer: return Kind::integer;
    case LoraField::Kind::number: return Kind::number;
    case LoraField::Kind::boolean: return Kind::boolean;
    case LoraField::Kind::string: return Kind::string;
    case LoraField::Kind::strings: return Kind::strings;
    case LoraField::Kind::integers: return Kind::integers;
    case LoraField::Kind::selector: return Kind::selector;
    case LoraField::Kind::init: return Kind::init;
    case LoraField::Kind::rank_pattern: return Kind::pattern_ints;
    case LoraField::Kind::alpha_pattern: return Kind::pattern_numbers;
  }
  return Kind::string;
}

// A recipe value as the JSON the field table reads. YAML scalars are untyped, so the key's kind
// says how to read them (type_problem has checked the form).
json json_of(const YAML::Node& n, Kind kind) {
  if (n.IsNull()) return nullptr;
  auto strings_or_one = [&] { return n.IsSequence() ? json(n.as<std::vector<std::string>>()) : json(n.as<std::string>()); };
  switch (kind) {
    case Kind::integer: return n.as<int64_t>();
    case Kind::number: return n.as<double>();
    case Kind::boolean: return n.as<bool>();
    case Kind::string:
    case Kind::init: return n.as<std::string>();  // init_lora_weights reads "true"/"false" too
    case Kind::strings:
    case Kind::selector: return strings_or_one();
    case Kind::integers: return n.IsSequence() ? json(n.as<std::vector<int64_t>>()) : json(n.as<int64_t>());
    case Kind::numbers: return n.IsSequence() ? json(n.as<std::vector<double>>()) : json(n.as<double>());
    case Kind::pattern_ints:
    case Kind::pattern_numbers: {
      json j = json::object();
      for (const auto& item : n) {
        const std::string key = item.first.as<std::string>();
        j[key] = kind == Kind::pattern_ints ? json(item.second.as<int64_t>()) : json(item.second.as<double>());
      }
      return j;
    }
  }
  return nullptr;
}

YAML::Node yaml_of(const json& j) {
  switch (j.type()) {
    case json::value_t::boolean: return YAML::Node(j.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return YAML::Node(j.get<int64_t>());
    case json::value_t::number_float: return YAML::Node(j.get<double>());
    case json::value_t::string: return YAML::Node(j.get<std::string>());
    case json::value_t::array: {
      YAML::Node n(YAML::NodeType::Sequence);
      for (const auto& item : j) n.push_back(yaml_of(item));
      return n;
    }
    case json::value_t::object: {
      YAML::Node n(YAML::NodeType::Map);
      for (const auto& [k, v] : j.items()) n[k] = yaml_of(v);
      return n;
    }
    default: return YAML::Node(YAML::NodeType::Null);
  }
}

// A JSON default as a recipe would write it: strings bare (none), the rest as JSON flow (null, 0.0, {}).
std::string yaml_text(const std::string& json_text) {
  const json j = json::parse(json_text);
  return j.is_string() ? j.get<std::string>() : json_text;
}

const char* const kMethodHelp =
    "`lora`: adapters (LoRA; DoRA with adapter.use_dora); `full`: every weight trains (much more memory; then no "
    "other adapter.* key may be set, except that `adapter.method=full` on the command line ignores the recipe's "
    "adapter keys with a warning). `dora` is shorthand for `lora` with adapter.use_dora: true.";

std::vector<Key> adapter_keys() {
  std::vector<Key> out = {{"adapter.method", Kind::string, "lora", kMethodHelp, kAdapterMethods, RT_ENUM(adapter.method, AdapterMethod, kAdapterMethods)},
                          {"adapter.init_from", Kind::string, "\"\"", "A saved adapter directory (PEFT format: adapter_config.json + adapter_model.safetensors) to start from and keep training instead of a fresh adapter, e.g. the SFT adapter a GRPO run starts from. Its adapter_config.json decides the adapter; the other `adapter.*` keys are then not used.", {}, RT_SCALAR(adapter.init_from, std::string)}};
  for (const LoraField& field : peft::lora_config_fields()) {
    if (!field.is_recipe_key()) continue;
    const Kind kind = kind_of(field.kind);
    out.push_back({"adapter." + field.name, kind, yaml_text(field.default_json()), field.help, field.choices,
                   [&field, kind](RunConfig& c, const YAML::Node& n) { field.set_from_json(c.adapter.lora, json_of(n, kind).dump()); },
                   [&field](const RunConfig& c) { return yaml_of(json::parse(field.value_json(c.adapter.lora))); }});
  }
  return out;
}

const std::vector<Key>& keys() {
  static const std::vector<Key> table = [] {
    std::vector<Key> t = {
      // model
      {"model.path", Kind::string, "null", "Hugging Face model directory (config.json, safetensors weights, tokenizer files), or a hub name `org/name[@revision]` found in the local Hugging Face cache. Without weights the model is initialised randomly from `model.init_seed`.", {}, RT_SCALAR(model.path, std::string)},
      {"model.dtype", Kind::string, "float32", "Compute dtype: the dtype the weights are held in. `bfloat16` halves the model's memory and the bytes a decode step reads (generation, evaluation); trained adapters stay fp32 (PEFT's autocast_adapter_dtype), but full fine-tuning would train the bf16 weights themselves: for it keep `float32` and set `train.precision: bf16`. bf16 is emulated on CPUs without AVX512-BF16 or AMX (2.5-3x slower than fp32 there).", {"float32", "bfloat16"}, RT_SCALAR(model.dtype, std::string)},
      {"model.download", Kind::boolean, "false", "When `model.path` is a hub name (`org/name` or `org/name@revision`) missing from the local Hugging Face cache, download it there first (HF_ENDPOINT and HF_TOKEN are honoured; docs/data.md).", {}, RT_SCALAR(model.download, bool)},
      {"model.quantize", Kind::string, "none", "Store the frozen projection weights quantized (QLoRA): `int8` per output channel (~4x smaller than fp32) or `nf4` in blocks of 64 (~7x smaller); embeddings, norms and the output head stay in `model.dtype`. Costs dequantisation time per step (docs/quantization.md).", {"none", "int8", "nf4"}, RT_SCALAR(model.quantize, std::string)},
      {"model.double_quant", Kind::boolean, "false", "With `model.quantize: nf4`, quantize the per-block scales to 8 bits as well (QLoRA's double quantisation: 0.52 instead of 0.56 bytes per weight).", {}, RT_SCALAR(model.double_quant, bool)},
      {"model.device", Kind::string, "cpu", "Where the model and its batches live: `cpu`, `cuda` or `cuda:N`. Under data parallelism `cuda` is each worker's `LOCAL_RANK` GPU and the workers reduce with NCCL instead of Gloo (a CUDA build of LibTorch is needed; docs/distributed.md says what was run).", {}, RT_SCALAR(model.device, std::string)},
      {"model.init_seed", Kind::integer, "0", "Seed of the random initialisation when the model directory has no weights.", {}, RT_SCALAR(model.init_seed, int64_t)},
      // data
      {"data.train_file", Kind::string, "null", "JSONL training file (GSM8K: `question`, `answer` ending in `#### N`).", {}, RT_SCALAR(data.train_file, std::string)},
      {"data.eval_file", Kind::string, "\"\"", "JSONL validation file; empty: `data.validation_size` examples are held out of the training file.", {}, RT_SCALAR(data.eval_file, std::string)},
      {"data.format", Kind::string, "gsm8k", "`gsm8k`: the answer field holds the rationale and `#### N`; `jsonl`: separate rationale and answer fields; `messages` (conversations), `prompt_completion`, `text`, `alpaca` (instruction/input/output) as TRL's SFTTrainer reads them, conversations rendered in the template's chat roles or, with a `format: chat` template, through the model's own chat template (docs/data.md); `auto`: one of those four, told by the first record's fields.", kDataFormats, RT_ENUM(data.format, DataFormat, kDataFormats)},
      {"data.question_field", Kind::string, "question", "JSON field with the question.", {}, RT_SCALAR(data.question_field, std::string)},
      {"data.rationale_field", Kind::string, "rationale", "JSON field with the worked solution (format `jsonl` only).", {}, RT_SCALAR(data.rationale_field, std::string)},
      {"data.answer_field", Kind::string, "answer", "JSON field with the answer.", {}, RT_SCALAR(data.answer_field, std::string)},
      {"data.messages_field", Kind::string, "messages", "JSON field with the conversation: a list of {role: system|user|assistant, content} (format `messages`).", {}, RT_SCALAR(data.messages_field, std::string)},
      {"data.prompt_field", Kind::string, "prompt", "JSON field with the prompt: a string, or a list of messages (format `prompt_completion`).", {}, RT_SCALAR(data.prompt_field, std::string)},
      {"data.completion_field", Kind::string, "completion", "JSON field with the completion: a string, or a list of messages (format `prompt_completion`).", {}, RT_SCALAR(data.completion_field, std::string)},
      {"data.text_field", Kind::string, "text", "JSON field with the document (format `text`: every token carries a label).", {}, RT_SCALAR(data.text_field, std::string)},
      {"data.instruction_field", Kind::string, "instruction", "Alpaca: the instruction (the user turn).", {}, RT_SCALAR(data.instruction_field, std::string)},
      {"data.input_field", Kind::string, "input", "Alpaca: the optional input, appended to the user turn after a blank line.", {}, RT_SCALAR(data.input_field, std::string)},
      {"data.output_field", Kind::string, "output", "Alpaca: the output (the assistant turn).", {}, RT_SCALAR(data.output_field, std::string)},
      {"data.assistant_only_loss", Kind::boolean, "true", "Formats `messages` and `alpaca`: only assistant turns carry labels; false: every token.", {}, RT_SCALAR(data.assistant_only_loss, bool)},
      {"data.completion_only_loss", Kind::boolean, "true", "Format `prompt_completion`: only the completion carries labels; false: every token.", {}, RT_SCALAR(data.completion_only_loss, bool)},
      {"data.strip_calculator", Kind::boolean, "false", "Remove GSM8K's calculator annotations `<<48/2=24>>` from the rationales.", {}, RT_SCALAR(data.strip_calculator, bool)},
      {"data.validation_size", Kind::integer, "200", "Examples held out for validation (seeded by `train.seed`); with `data.eval_file`, how many of its examples to use (0: all).", {}, RT_SCALAR(data.validation_size, int64_t)},
      {"data.max_length", Kind::integer, "512", "Longest tokenized example (prompt + response). Cost grows with it.", {}, RT_SCALAR(data.max_length, int64_t)},
      {"data.overlong", Kind::string, "skip", "What to do with longer examples: drop them, or cut the response.", {"skip", "truncate"}, RT_SCALAR(data.overlong, std::string)},
      {"data.limit", Kind::integer, "0", "Use only the first N examples of the training file (0: all).", {}, RT_SCALAR(data.limit, int64_t)},
      {"data.packing", Kind::boolean, "false", "Pack the training examples into sequences of up to `data.max_length` tokens (best fit decreasing), attention confined to each example and positions restarting per example: the same loss with fewer, fuller rows (docs/data.md).", {}, RT_SCALAR(data.packing, bool)},
      {"data.group_by_length", Kind::boolean, "true", "Batch examples of similar length together (less padding, faster).", {}, RT_SCALAR(data.group_by_length, bool)},
      // template
      {"template", Kind::string, "gsm8k-cot", "Chain-of-thought template: a name from examples/templates or a path to a YAML file (docs/templates.md).", {}, RT_SCALAR(template_name, std::string)},
    };
    const std::vector<Key> adapter = adapter_keys();
    t.insert(t.end(), adapter.begin(), adapter.end());
    t.insert(t.end(), {
      // train
      {"train.output_dir", Kind::string, "runs/ranktune", "Where the adapter, checkpoints, metrics, curve, predictions and summary go.", {}, RT_SCALAR(train.output_dir, std::string)},
      {"train.seed", Kind::integer, "42", "Seed of adapter initialisation, dropout, data order and the validation split.", {}, RT_SCALAR(train.seed, uint64_t)},
      {"train.epochs", Kind::integer, "1", "Passes over the training data (ignored when max_steps > 0).", {}, RT_SCALAR(train.epochs, int64_t)},
      {"train.max_steps", Kind::integer, "0", "Optimizer steps to run; 0: epochs × batches / gradient_accumulation_steps.", {}, RT_SCALAR(train.max_steps, int64_t)},
      {"train.batch_size", Kind::integer, "8", "Examples per micro-batch (per worker under data parallelism: the global batch is this × the workers). Activation memory grows linearly with it.", {}, RT_SCALAR(train.batch_size, int64_t)},
      {"train.gradient_accumulation_steps", Kind::integer, "1", "Micro-batches per optimizer step, each weighted by its share of the step's loss tokens: the gradient of one batch of batch_size × this examples, at the memory of one micro-batch.", {}, RT_SCALAR(train.gradient_accumulation_steps, int64_t)},
      {"train.lr", Kind::number, "2e-4", "Peak learning rate (AdamW).", {}, RT_SCALAR(train.lr, double)},
      {"train.lora_plus_ratio", Kind::number, "0", "LoRA+: learning rate of B and of 1-D adapter parameters = lr × this (0: off; the paper suggests 16).", {}, RT_SCALAR(train.lora_plus_ratio, double)},
      {"train.weight_decay", Kind::number, "0.0", "AdamW weight decay (never on biases, norms or DoRA magnitudes).", {}, RT_SCALAR(train.weight_decay, double)},
      {"train.adam_beta1", Kind::number, "0.9", "AdamW β1.", {}, RT_SCALAR(train.adam_beta1, double)},
      {"train.adam_beta2", Kind::number, "0.999", "AdamW β2.", {}, RT_SCALAR(train.adam_beta2, double)},
      {"train.adam_epsilon", Kind::number, "1e-8", "AdamW ε.", {}, RT_SCALAR(train.adam_epsilon, double)},
      {"train.schedule", Kind::string, "cosine", "Learning-rate schedule after warmup.", kSchedules, RT_ENUM(train.schedule, Schedule, kSchedules)},
      {"train.warmup_steps", Kind::integer, "0", "Linear warmup steps (overrides warmup_ratio when > 0).", {}, RT_SCALAR(train.warmup_steps, int64_t)},
      {"train.warmup_ratio", Kind::number, "0.03", "Warmup as a fraction of the total steps.", {}, RT_SCALAR(train.warmup_ratio, double)},
      {"train.max_grad_norm", Kind::number, "1.0", "Clip the gradient norm to this (0: no clipping).", {}, RT_SCALAR(train.max_grad_norm, double)},
      {"train.precision", Kind::string, "fp32", "`bf16`: each forward pass under CPU autocast (bf16 matmuls; parameters, gradients and AdamW state stay fp32; softmax, norms and the loss in fp32; docs/performance.md). `auto`: bf16 when a start-up GEMM probe finds it at least 1.2x faster than fp32 on this machine (AMX, AVX512-BF16), else fp32; the decision and both speeds are logged and written to summary.json.", kPrecisions, RT_ENUM(train.precision, Precision, kPrecisions)},
      {"train.gradient_checkpointing", Kind::boolean, "false", "Recompute each layer's activations in backward: much less memory for about one more forward pass of time.", {}, RT_SCALAR(train.gradient_checkpointing, bool)},
      {"train.log_every", Kind::integer, "10", "Optimizer steps between metrics rows and progress updates.", {}, RT_SCALAR(train.log_every, int64_t)},
      {"train.eval_every", Kind::integer, "0", "Steps between evaluations (validation loss, and accuracy on eval.during_training questions); 0: only at the end.", {}, RT_SCALAR(train.eval_every, int64_t)},
      {"train.save_every", Kind::integer, "0", "Steps between checkpoints (0: none besides Ctrl-C and the final adapter).", {}, RT_SCALAR(train.save_every, int64_t)},
      {"train.keep_last", Kind::integer, "2", "Checkpoints kept (older ones are deleted; 0 keeps all).", {}, RT_SCALAR(train.keep_last, int64_t)},
      {"train.resume_from", Kind::string, "\"\"", "A checkpoint directory, or `latest` (the newest in output_dir), to continue exactly from. A larger `train.max_steps` or `train.epochs` continues to the new total; keys that shape the model, data or order must match the checkpoint.", {}, RT_SCALAR(train.resume_from, std::string)},
      {"train.overwrite_output_dir", Kind::boolean, "false", "Let a fresh run (no `train.resume_from`) replace another run's files in `train.output_dir`; otherwise such a start is refused.", {}, RT_SCALAR(train.overwrite_output_dir, bool)},
      {"train.max_nan_steps", Kind::integer, "10", "Stop after this many steps in a row with a non-finite loss or gradient (each is skipped with a warning).", {}, RT_SCALAR(train.max_nan_steps, int64_t)},
      {"train.threads", Kind::integer, "0", "Intra-op threads per worker (0: $RANKTUNE_NUM_THREADS when set, else all cores, divided among the workers of one machine under data parallelism).", {}, RT_SCALAR(train.threads, int64_t)},
      {"train.distributed_timeout", Kind::number, "600", "Data parallelism (docs/distributed.md): seconds a worker waits for the others (the rendezvous, then each collective) before it ends the run with an error naming the operation.", {}, RT_SCALAR(train.distributed_timeout, double)},
      // eval
      {"eval.file", Kind::string, "\"\"", "GSM8K-format questions for the final evaluation (empty: the validation examples).", {}, RT_SCALAR(eval.file, std::string)},
      {"eval.adapter", Kind::string, "\"\"", "For `ranktune eval`: the adapter directory (default: train.output_dir; `none` evaluates the base model).", {}, RT_SCALAR(eval.adapter, std::string)},
      {"eval.limit", Kind::integer, "0", "Evaluate only the first N questions (0: all).", {}, RT_SCALAR(eval.limit, int64_t)},
      {"eval.during_training", Kind::integer, "0", "Validation questions whose accuracy is measured at each train.eval_every (0: loss only).", {}, RT_SCALAR(eval.during_training, int64_t)},
      {"eval.batch_size", Kind::integer, "8", "Rows generated together. The eval.samples of one question share its prompt's prefill (`num_return_sequences`), so sampling takes batch_size / samples questions at a time (at least one).", {}, RT_SCALAR(eval.options.batch_size, int64_t)},
      {"eval.max_new_tokens", Kind::integer, "256", "Longest completion (0 skips the final evaluation).", {}, RT_SCALAR(eval.options.max_new_tokens, int64_t)},
      {"eval.greedy", Kind::boolean, "true", "Greedy main completions (accuracy, format rate, predictions.jsonl); false samples them with eval.temperature / top_p / top_k.", {}, RT_SCALAR(eval.options.greedy, bool)},
      {"eval.repetition_penalty", Kind::number, "1.0", "transformers' repetition_penalty for every completion: > 1 discourages tokens already in the prompt or the completion (small models loop otherwise). 1: off.", {}, RT_SCALAR(eval.options.repetition_penalty, double)},
      {"eval.no_repeat_ngram_size", Kind::integer, "0", "transformers' no_repeat_ngram_size: no n-gram of this size occurs twice in a completion (breaks the loops small models fall into under greedy decoding). 0: off.", {}, RT_SCALAR(eval.options.no_repeat_ngram_size, int64_t)},
      {"eval.samples", Kind::integer, "0", "Sampled completions per question for self-consistency (maj@k) and pass@k (0: greedy only). Cost grows linearly.", {}, RT_SCALAR(eval.options.samples, int64_t)},
      {"eval.temperature", Kind::number, "0.7", "Sampling temperature for eval.samples (and the main completions when eval.greedy is false).", {}, RT_SCALAR(eval.options.temperature, double)},
      {"eval.top_p", Kind::number, "0.95", "Nucleus sampling for eval.samples.", {}, RT_SCALAR(eval.options.top_p, double)},
      {"eval.top_k", Kind::integer, "0", "Top-k sampling for eval.samples (0: off).", {}, RT_SCALAR(eval.options.top_k, int64_t)},
      {"eval.pass_at_k", Kind::integers, "[]", "Report pass@k for these k (each ≤ eval.samples).", {}, RT_LIST(eval.options.pass_at_k, int64_t)},
      {"eval.calculator", Kind::boolean, "false", "When the model writes `<<expr=`, insert the result (the GSM8K paper's calculator; a template's own `tools:` syntax is always used, docs/tools.md).", {}, RT_SCALAR(eval.options.calculator, bool)},
      {"eval.seed", Kind::integer, "0", "Seed of sampling.", {}, RT_SCALAR(eval.options.seed, uint64_t)},
      {"eval.output_dir", Kind::string, "\"\"", "For `ranktune eval`: where predictions.jsonl and eval-summary.json go (default: train.output_dir).", {}, RT_SCALAR(eval.output_dir, std::string)},
      // sample (ranktune sample: rejection sampling and distillation, docs/sampling.md)
      {"sample.file", Kind::string, "\"\"", "For `ranktune sample`: GSM8K-format questions to sample answers for (default: data.train_file).", {}, RT_SCALAR(sample.file, std::string)},
      {"sample.limit", Kind::integer, "0", "Sample for the first N questions only (0: all).", {}, RT_SCALAR(sample.limit, int64_t)},
      {"sample.model", Kind::string, "\"\"", "The model sampled from (default: model.path): a larger teacher for distillation.", {}, RT_SCALAR(sample.model, std::string)},
      {"sample.adapter", Kind::string, "\"\"", "An adapter directory attached to sample.model (empty or `none`: the model alone).", {}, RT_SCALAR(sample.adapter, std::string)},
      {"sample.template", Kind::string, "\"\"", "The template the prompts are rendered and answers extracted with (default: template).", {}, RT_SCALAR(sample.template_name, std::string)},
      {"sample.output", Kind::string, "\"\"", "The JSONL written: one `prompt`/`completion` record per kept sample (data.format: prompt_completion), and the summary beside it (`samples.jsonl` → `samples.summary.json`). Required.", {}, RT_SCALAR(sample.output, std::string)},
      {"sample.num_samples", Kind::integer, "4", "K: completions sampled per question.", {}, RT_SCALAR(sample.options.num_samples, int64_t)},
      {"sample.keep", Kind::string, "all_correct", "Which samples are kept: every correct one (duplicates dropped), the highest-reward correct one, or the first correct one.", kSampleKeep, RT_ENUM(sample.options.keep, SampleKeep, kSampleKeep)},
      {"sample.answer", Kind::string, "strict", "What counts as correct: the answer in the template's own format (strict), or in any format / the last number (flexible).", kAnswerModes, RT_ENUM(sample.options.answer, prompt::AnswerMode, kAnswerModes)},
      {"sample.format_weight", Kind::number, "0.5", "Reward = accuracy + format_weight × format (the template's format reward); best_of_k keeps the highest.", {}, RT_SCALAR(sample.options.format_weight, double)},
      {"sample.batch_size", Kind::integer, "8", "Completions generated together (with the KV cache).", {}, RT_SCALAR(sample.options.batch_size, int64_t)},
      {"sample.max_new_tokens", Kind::integer, "256", "Longest completion.", {}, RT_SCALAR(sample.options.max_new_tokens, int64_t)},
      {"sample.temperature", Kind::number, "0.7", "Sampling temperature (0: greedy, every sample the same).", {}, RT_SCALAR(sample.options.temperature, double)},
      {"sample.top_p", Kind::number, "0.95", "Nucleus sampling.", {}, RT_SCALAR(sample.options.top_p, double)},
      {"sample.top_k", Kind::integer, "0", "Top-k sampling (0: off).", {}, RT_SCALAR(sample.options.top_k, int64_t)},
      {"sample.repetition_penalty", Kind::number, "1.0", "transformers' repetition_penalty (1: off).", {}, RT_SCALAR(sample.options.repetition_penalty, double)},
      {"sample.calculator", Kind::boolean, "false", "The GSM8K calculator while sampling (a template's own `tools:` syntax is always used).", {}, RT_SCALAR(sample.options.calculator, bool)},
      {"sample.seed", Kind::integer, "0", "Seed of sampling.", {}, RT_SCALAR(sample.options.seed, uint64_t)},
      // grpo
      {"grpo.num_generations", Kind::integer, "8", "G: completions sampled per prompt; their rewards are compared within the group. `train.batch_size` (completions per micro-batch) must be a multiple of it.", {}, RT_SCALAR(grpo.num_generations, int64_t)},
      {"grpo.max_completion_length", Kind::integer, "256", "Longest completion sampled (tokens).", {}, RT_SCALAR(grpo.max_completion_length, int64_t)},
      {"grpo.temperature", Kind::number, "1.0", "Sampling temperature of the rollouts; the log-probs are computed at the same temperature (as TRL).", {}, RT_SCALAR(grpo.temperature, double)},
      {"grpo.top_p", Kind::number, "1.0", "Nucleus sampling of the rollouts (1: off).", {}, RT_SCALAR(grpo.top_p, double)},
      {"grpo.top_k", Kind::integer, "0", "Top-k sampling of the rollouts (0: off).", {}, RT_SCALAR(grpo.top_k, int64_t)},
      {"grpo.repetition_penalty", Kind::number, "1.0", "transformers' repetition_penalty while sampling the rollouts (1: off).", {}, RT_SCALAR(grpo.repetition_penalty, double)},
      {"grpo.loss_type", Kind::string, "dapo", "How the clipped per-token losses are averaged (docs/grpo.md): `grpo` per sequence then over sequences, `bnpo` over the micro-batch's tokens, `dr_grpo` over sequences × max_completion_length, `dapo` over every completion token of the optimizer step.", kGrpoLossTypes, RT_SCALAR(grpo.loss_type, std::string)},
      {"grpo.epsilon", Kind::number, "0.2", "Lower clipping bound of the importance ratio: 1 - epsilon.", {}, RT_SCALAR(grpo.epsilon, double)},
      {"grpo.epsilon_high", Kind::number, "0.2", "Upper clipping bound: 1 + epsilon_high (DAPO's clip-higher uses 0.28).", {}, RT_SCALAR(grpo.epsilon_high, double)},
      {"grpo.beta", Kind::number, "0.0", "Weight of the KL penalty to the reference policy (k3 estimator). The reference is the model with its adapter disabled: one extra forward pass, no second copy of the weights. 0: no reference pass.", {}, RT_SCALAR(grpo.beta, double)},
      {"grpo.num_iterations", Kind::integer, "1", "μ: optimizer steps on each batch of rollouts (the old policy's log-probs are computed once when > 1). `train.max_steps` must be a multiple of it.", {}, RT_SCALAR(grpo.num_iterations, int64_t)},
      {"grpo.scale_rewards", Kind::string, "group", "Advantages divided by the reward std of the group, of the whole batch, or not at all (Dr. GRPO).", kRewardScalings, RT_SCALAR(grpo.scale_rewards, std::string)},
      {"grpo.mask_truncated_completions", Kind::boolean, "false", "Completions cut at max_completion_length carry no loss.", {}, RT_SCALAR(grpo.mask_truncated_completions, bool)},
      {"grpo.skip_zero_std_groups", Kind::boolean, "false", "Groups whose completions all got the same reward (zero advantage: no policy gradient) are left out of the optimizer step; they are counted in `frac_reward_zero_std` either way.", {}, RT_SCALAR(grpo.skip_zero_std_groups, bool)},
      {"grpo.reward_funcs", Kind::strings, "[accuracy, format]", "Built-in rewards: `accuracy` (the strictly extracted answer matches: 0/1), `accuracy_flexible` (any known answer format, else the last number), `format` (the template's required structure: 0/1), `length` (minus the completion's length / max_completion_length: a length penalty scaled by its weight). Custom C++/Python reward functions come after these.", {}, RT_LIST(grpo.reward_funcs, std::string)},
      {"grpo.reward_weights", Kind::numbers, "[]", "Weight of each reward function, in order (built-in, then custom); empty: 1 each.", {}, RT_LIST(grpo.reward_weights, double)},
      {"grpo.calculator", Kind::boolean, "false", "While sampling, when the model writes `<<expr=`, insert the result (the GSM8K calculator; a template's own `tools:` syntax is always used). Inserted tokens are part of the completion but carry no loss.", {}, RT_SCALAR(grpo.calculator, bool)},
      {"grpo.logprob_chunk", Kind::integer, "256", "Completion tokens whose log-probs are computed at once (memory: chunk × vocabulary floats).", {}, RT_SCALAR(grpo.logprob_chunk, int64_t)},
    });
    return t;
  }();
  return table;
}

#undef RT_SCALAR
#undef RT_LIST
#undef RT_ENUM

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
    case Kind::strings:  // a list, or one string for a one-entry list (as PEFT takes them)
      if (null || node.IsScalar()) return "";
      return node.IsSequence() && scalar_as(std::vector<std::string>{}) ? "" : "expected a list of strings";
    case Kind::numbers:
      if (null) return "";
      if (node.IsScalar()) return scalar_as(double{}) ? "" : "expected a number or a list of numbers, got '" + node.as<std::string>() + "'";
      return node.IsSequence() && scalar_as(std::vector<double>{}) ? "" : "expected a list of numbers";
    case Kind::integers:
      if (null) return "";
      if (node.IsScalar()) return scalar_as(int64_t{}) ? "" : "expected an integer or a list of integers, got '" + node.as<std::string>() + "'";
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
  } catch (const nlohmann::json::exception& e) {
    // Adapter keys pass through JSON, which refuses text that is not UTF-8 (type_error.316).
    throw Error("invalid value: " + io::json_exception_message(e), where);
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

// `given`: where each key was set; a value from an override is blamed on the command line.
void check_values(const RunConfig& c, const std::string& source, const std::map<std::string, ErrorContext>& given) {
  auto where = [&](const std::string& key) {
    const auto it = given.find(key);
    return it != given.end() && it->second.file == kCommandLine ? it->second : ErrorContext{source, key, -1};
  };
  auto fail = [&](const char* key, const std::string& message) { throw Error(message, where(key)); };
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
  if (!(t.distributed_timeout > 0)) fail("train.distributed_timeout", "must be positive (seconds)");
  if (c.model.device != "cpu" && c.model.device != "cuda" && c.model.device.rfind("cuda:", 0) != 0) {
    fail("model.device", "'" + c.model.device + "' is not a device; allowed: cpu, cuda, cuda:N");
  }
  if (c.model.device.rfind("cuda:", 0) == 0) {
    const std::string index = c.model.device.substr(5);
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 3) {
      fail("model.device", "'" + c.model.device + "' is not a device; allowed: cpu, cuda, cuda:N");
    }
  }
  if (c.model.device != "cpu" && c.model.quantize != "none") {
    fail("model.device", "model.quantize runs on the CPU only (its kernels are host code; docs/quantization.md)");
  }
  if (c.data.max_length < 2) fail("data.max_length", "must be at least 2");
  if (c.data.validation_size < 0) fail("data.validation_size", "must be >= 0");
  const EvalOptions& e = c.eval.options;
  if (e.batch_size <= 0) fail("eval.batch_size", "must be positive");
  if (e.max_new_tokens < 0) fail("eval.max_new_tokens", "must be >= 0");
  if (e.samples < 0) fail("eval.samples", "must be >= 0");
  if (!(e.repetition_penalty > 0)) fail("eval.repetition_penalty", "must be > 0");
  if (e.no_repeat_ngram_size < 0) fail("eval.no_repeat_ngram_size", "must be >= 0");
  for (int64_t k : e.pass_at_k) {
    if (k <= 0 || k > e.samples) fail("eval.pass_at_k", c10::str("k=", k, " needs 0 < k <= eval.samples (", e.samples, ")"));
  }
  const GrpoSection& g = c.grpo;
  if (g.num_generations < 2) fail("grpo.num_generations", "must be at least 2 (advantages compare completions of one prompt)");
  if (g.max_completion_length <= 0) fail("grpo.max_completion_length", "must be positive");
  if (!(g.temperature > 0)) fail("grpo.temperature", "must be > 0 (rollouts are sampled)");
  if (!(g.top_p > 0 && g.top_p <= 1)) fail("grpo.top_p", "must be in (0, 1]");
  if (g.top_k < 0) fail("grpo.top_k", "must be >= 0");
  if (!(g.repetition_penalty > 0)) fail("grpo.repetition_penalty", "must be > 0");
  if (!(g.epsilon >= 0 && g.epsilon < 1)) fail("grpo.epsilon", "must be in [0, 1)");
  if (!(g.epsilon_high >= 0)) fail("grpo.epsilon_high", "must be >= 0");
  if (!(g.beta >= 0)) fail("grpo.beta", "must be >= 0");
  if (g.num_iterations <= 0) fail("grpo.num_iterations", "must be positive");
  if (g.logprob_chunk <= 0) fail("grpo.logprob_chunk", "must be positive");
  for (double w : g.reward_weights) {
    if (!std::isfinite(w)) fail("grpo.reward_weights", "must be finite numbers");
  }
  if (!c.adapter.init_from.empty() && c.adapter.full()) fail("adapter.init_from", "needs adapters: adapter.method is full");
  if (c.adapter.full() && c.model.quantize != "none") {
    fail("model.quantize", "is " + c.model.quantize + ", but adapter.method: full trains every weight and a quantized "
                           "base is frozen: train an adapter on it (adapter.method: lora or dora, QLoRA), or use "
                           "model.quantize: none");
  }
  const SampleOptions& so = c.sample.options;
  if (so.num_samples <= 0) fail("sample.num_samples", "must be positive");
  if (so.batch_size <= 0) fail("sample.batch_size", "must be positive");
  if (so.max_new_tokens <= 0) fail("sample.max_new_tokens", "must be positive");
  if (c.sample.limit < 0) fail("sample.limit", "must be >= 0");
  if (!(so.temperature >= 0)) fail("sample.temperature", "must be >= 0");
  if (!(so.top_p > 0 && so.top_p <= 1)) fail("sample.top_p", "must be in (0, 1]");
  if (so.top_k < 0) fail("sample.top_k", "must be >= 0");
  if (!(so.repetition_penalty > 0)) fail("sample.repetition_penalty", "must be > 0");
  if (!(so.format_weight >= 0)) fail("sample.format_weight", "must be >= 0");
  if (!c.adapter.full()) {
    try {
      c.adapter.lora.validate();
    } catch (const Error& e) {
      throw Error(e.message(), where("adapter." + e.context().key));
    }
  }
}

// Once read, adapter.method is `lora` or `full`: `dora` becomes lora with use_dora (the one place a
// recipe's method turns into LoraConfig::use_dora). `given`: the keys the recipe and the overrides
// set, and where.
void resolve_method(RunConfig& c, const std::map<std::string, ErrorContext>& given) {
  const auto method = given.find("adapter.method");
  if (method == given.end()) return;  // the default, lora
  const ErrorContext& where = method->second;
  if (c.adapter.method == AdapterMethod::dora) {
    if (given.count("adapter.use_dora") != 0 && !c.adapter.lora.use_dora()) {
      throw Error("is dora (LoRA with adapter.use_dora: true) but adapter.use_dora is false: for LoRA use "
                  "adapter.method: lora, for DoRA drop adapter.use_dora",
                  where);
    }
    c.adapter.method = AdapterMethod::lora;
    c.adapter.lora.use_dora(true);
  } else if (c.adapter.full()) {
    // Overriding a recipe's method on the command line switches it to full fine-tuning; setting
    // adapter fields next to `full` in the same place is a contradiction.
    auto on_command_line = [](const ErrorContext& at) { return at.file == kCommandLine; };
    std::vector<std::string> contradicting, ignored;
    for (const auto& [path, at] : given) {
      if (path.rfind("adapter.", 0) != 0 || path == "adapter.method") continue;
      (on_command_line(where) && !on_command_line(at) ? ignored : contradicting).push_back(path);
    }
    if (!contradicting.empty()) {
      throw Error("is full (every weight trains), so " + join(contradicting) +
                      " cannot apply: remove the adapter keys, or use adapter.method: lora",
                  where);
    }
    if (!ignored.empty()) log_warning("adapter.method=full (command line): ignoring the recipe's " + join(ignored));
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

// What docs/config.md says under the adapter table.
std::string adapter_notes() {
  std::string notes =
      "\nThe `adapter.<field>` keys are Hugging Face PEFT's `LoraConfig` fields with PEFT's defaults, from the\n"
      "field table in `src/peft/lora_config_fields.cpp` (which also makes `adapter_config.json` and Python's\n"
      "`ranktune.LoraConfig`). With adapters, `adapter.target_modules` must be set: PEFT falls back to a list per\n"
      "model type (Llama: `[q_proj, v_proj]`), ranktune has no such default and says so before loading anything.\n"
      "The other fields are not recipe keys:";
  std::string sep = "\n";
  for (const auto& field : peft::lora_config_fields()) {
    if (field.is_recipe_key()) continue;
    notes += sep + "`" + field.name + "` (" + field.outside_recipes + ")";
    sep = ";\n";
  }
  return notes + ".\n";
}

}  // namespace

// ---- loading -----------------------------------------------------------------------------------------

RunConfig RunConfig::parse(const std::string& yaml_text, const std::string& source, const std::vector<std::string>& overrides) {
  const YAML::Node root = io::parse_yaml(yaml_text, source);
  RunConfig config = defaults();
  config.source = source;
  std::map<std::string, ErrorContext> given;  // the keys set here, and where
  const std::vector<std::string> sections = {"model", "data", "template", "adapter", "train", "eval", "grpo", "sample"};
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
      if (!fields.has(name)) continue;
      given[path] = fields.context(name);
      apply(config, k, fields.raw(name), given[path]);
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
                  ErrorContext{kCommandLine, path, -1});
    }
    given[path] = ErrorContext{kCommandLine, path, -1};
    apply(config, *key, value, given[path]);
  }
  resolve_method(config, given);
  check_required(config, source);
  check_values(config, source, given);
  return config;
}

RunConfig RunConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  return parse(io::read_file(path), path, overrides);
}

std::string to_string(DataFormat format) { return kDataFormats[static_cast<size_t>(format)]; }

// ---- the adapter -------------------------------------------------------------------------------------

std::string AdapterSection::training_method() const {
  if (full()) return "full";
  return lora.use_dora() ? "dora" : "lora";
}

peft::LoraConfig RunConfig::adapter_config() const {
  RANKTUNE_CHECK_CTX(!adapter.full(), (ErrorContext{source, "adapter.method", -1}),
                     "is full: the run trains every weight and attaches no adapter");
  RANKTUNE_CHECK_CTX(!adapter.lora.target_modules().empty(), (ErrorContext{source, "adapter.target_modules", -1}),
                     "is not set: name the modules to adapt, e.g. [q_proj, v_proj] or all-linear (recipes have no "
                     "per-model default)");
  peft::LoraConfig lora = adapter.lora;
  lora.task_type(std::string("CAUSAL_LM"));
  lora.base_model_name_or_path(model.path);
  return lora;
}

// ---- writing -----------------------------------------------------------------------------------------

std::string RunConfig::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string open_section;
  for (const auto& k : keys()) {
    const std::string path = k.path;
    const size_t dot = path.find('.');
    const std::string section = dot == std::string::npos ? "" : path.substr(0, dot);
    if (section == "adapter" && path != "adapter.method" && adapter.full()) continue;  // no adapter
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

std::vector<std::pair<std::string, std::string>> RunConfig::key_values() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& k : keys()) {
    if (k.path.rfind("adapter.", 0) == 0 && k.path != "adapter.method" && adapter.full()) continue;
    YAML::Emitter text;
    text << YAML::Flow << k.get(*this);
    out.emplace_back(k.path, text.c_str());
  }
  return out;
}

std::string RunConfig::documentation() {
  std::ostringstream md;
  md << "# Configuration keys\n\n"
     << "`ranktune train CONFIG.yaml [key.path=value ...]`, `ranktune grpo CONFIG.yaml [...]` (docs/grpo.md),\n"
     << "`ranktune eval CONFIG.yaml [...]` and `ranktune sample CONFIG.yaml [...]` read a YAML recipe with the\n"
     << "sections below. Every key is checked: an unknown or misspelt key is an error naming the file, the line\n"
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
      if (open_section == "adapter") md << adapter_notes();
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
