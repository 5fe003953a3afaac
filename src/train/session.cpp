#include "session.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/threads.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/hub_download.h"
#include "ranktune/model/model_directory.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/adaptable_model.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/train/distributed.h"
#include "sft_data.h"

#include <torch/cuda.h>

#include <atomic>
#include <cmath>
#include <filesystem>

namespace ranktune::train {
namespace {

namespace fs = std::filesystem;

std::vector<data::Example> load_examples(const std::string& path, const DataSection& d, int64_t limit) {
  data::LoadOptions o;
  // GSM8K records; the SFT formats' evaluation questions (eval.file) are GSM8K records too.
  o.gsm8k_answer = d.format != DataFormat::jsonl;
  o.question_field = d.question_field;
  o.rationale_field = d.rationale_field;
  o.answer_field = d.answer_field;
  o.strip_calculator = d.strip_calculator;
  o.limit = limit;
  return data::load_jsonl(path, o);
}

void keep_first(std::vector<data::Example>& examples, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(examples.size()) > limit) examples.resize(static_cast<size_t>(limit));
}

std::vector<data::TextPair> rendered(const std::vector<data::Example>& examples, const prompt::PromptTemplate& t) {
  std::vector<data::TextPair> pairs;
  for (const auto& e : examples) pairs.push_back({t.render_prompt(e.question), t.render_response(e.rationale, e.answer)});
  return pairs;
}

}  // namespace

// ---- setup ---------------------------------------------------------------------------------------------

RecipeValues fixed_recipe_values(const RunConfig& config, const TrainerInputs& inputs) {
  RecipeValues out;
  for (auto& [key, value] : config.key_values()) {
    const bool fixed = key == "model.path" || key == "model.init_seed" || key == "template" || key == "train.seed" ||
                       key == "train.batch_size" || key == "train.gradient_accumulation_steps" ||
                       key.rfind("grpo.", 0) == 0 ||
                       (key.rfind("adapter.", 0) == 0 && !inputs.peft_model) ||
                       (key.rfind("data.", 0) == 0 && !inputs.train_examples);
    if (fixed) out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

namespace {

// data.validation_size records held out of `train` (seeded by train.seed), the rest kept there;
// both keep their file order.
template <typename Record>
std::vector<Record> hold_out(std::vector<Record>& train, const RunConfig& config) {
  const DataSection& d = config.data;
  const auto n = static_cast<int64_t>(train.size());
  if (n == 0) return {};  // "no training examples" says it
  RANKTUNE_CHECK_CTX(d.validation_size < n, (ErrorContext{"", "data.validation_size", -1}),
                     "data.validation_size=", d.validation_size, " would hold out all ", n, " training examples: "
                     "give validation examples, or set data.validation_size lower (0: none)");
  const auto [kept, held] = data::split_indices(n, d.validation_size, config.train.seed);
  std::vector<Record> fit, out;
  for (const int64_t i : held) out.push_back(train[static_cast<size_t>(i)]);
  for (const int64_t i : kept) fit.push_back(std::move(train[static_cast<size_t>(i)]));
  train = std::move(fit);
  return out;
}

// The validation examples when none are given: data.eval_file (first data.validation_size), else
// data.validation_size examples held out of `train`.
std::vector<data::Example> held_out_validation(const RunConfig& config, std::vector<data::Example>& train) {
  const DataSection& d = config.data;
  if (!d.eval_file.empty()) return load_examples(d.eval_file, d, d.validation_size);
  return hold_out(train, config);
}

// The questions of the final evaluation: eval.file, else the validation examples; first eval.limit.
std::vector<data::Example> evaluation_questions_from(const RunConfig& config, std::vector<data::Example> validation) {
  std::vector<data::Example> out = config.eval.file.empty()
                                       ? std::move(validation)
                                       : load_examples(config.eval.file, config.data, config.eval.limit);
  keep_first(out, config.eval.limit);
  return out;
}

}  // namespace

RunExamples setup_examples(const RunConfig& config, const TrainerInputs& inputs) {
  RunExamples out;
  const DataSection& d = config.data;
  if (!inputs.train_examples && d.sft_format()) {
    RANKTUNE_CHECK_CTX(!inputs.eval_examples, (ErrorContext{"", "data.format", -1}),
                       "validation examples given in memory are GSM8K examples; with data.format=",
                       to_string(config.data.format), " give the validation records as data.eval_file");
    out.train_records = load_sft_records(d.train_file, d, d.limit);
    out.validation_records = d.eval_file.empty() ? hold_out(out.train_records, config)
                                                 : load_sft_records(d.eval_file, d, d.validation_size);
    if (config.eval.options.max_new_tokens > 0 && !config.eval.file.empty()) out.test = evaluation_questions_from(config, {});
    return out;
  }
  out.train = inputs.train_examples ? *inputs.train_examples
                                    : load_examples(config.data.train_file, config.data, config.data.limit);
  out.validation = inputs.eval_examples ? *inputs.eval_examples : held_out_validation(config, out.train);
  RANKTUNE_CHECK(!out.train.empty(), "no training examples");
  if (config.eval.options.max_new_tokens > 0) out.test = evaluation_questions_from(config, out.validation);
  return out;
}

std::vector<data::Example> evaluation_questions(const RunConfig& config) {
  std::vector<data::Example> validation, train;
  if (config.eval.file.empty()) {
    RANKTUNE_CHECK_CTX(!config.data.sft_format(), (ErrorContext{config.source, "eval.file", -1}),
                       "GSM8K evaluation needs questions: data.format=", to_string(config.data.format),
                       " records have none, so set eval.file to a GSM8K-format file");
    if (config.data.eval_file.empty()) train = load_examples(config.data.train_file, config.data, config.data.limit);
    validation = held_out_validation(config, train);
  }
  return evaluation_questions_from(config, std::move(validation));
}

void setup_model_files(const RunConfig& config, const TrainerInputs& inputs) {
  const bool reads_model_path = (!inputs.model && !inputs.peft_model) || !inputs.tokenizer;
  if (config.model.download && reads_model_path) io::download_if_missing(config.model.path);
}

std::shared_ptr<const tokenizer::Tokenizer> setup_tokenizer(const RunConfig& config, const TrainerInputs& inputs) {
  if (inputs.tokenizer) return inputs.tokenizer;
  return std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_pretrained(config.model.path));
}

std::shared_ptr<const prompt::PromptTemplate> setup_template(const RunConfig& config, const tokenizer::Tokenizer& tokenizer) {
  auto prompt_template = std::make_shared<prompt::PromptTemplate>(prompt::PromptTemplate::load(config.template_name));
  prompt_template->use_tokenizer(tokenizer);  // format: chat renders with the model's chat template
  return prompt_template;
}

std::string setup_run_directory(const TrainSection& t, const RecipeValues& recipe) {
  if (!t.resume_from.empty()) {
    std::string dir = resolve_resume_path(t.resume_from, t.output_dir);
    check_resume_recipe(dir, recipe);
    return dir;
  }
  if (t.overwrite_output_dir) return "";
  const auto existing = run_files(t.output_dir);
  if (existing.empty()) return "";
  std::string names;
  for (const auto& name : existing) names += (names.empty() ? "" : ", ") + name;
  throw Error(c10::str("holds another run (", names, "); continue it with train.resume_from=latest, "
                       "or replace it with train.overwrite_output_dir=true"),
              ErrorContext{t.output_dir, "train.output_dir", -1});
}

std::shared_ptr<model::CausalLMImpl> setup_model(const RunConfig& config, const TrainerInputs& inputs) {
  if (!inputs.peft_model) return inputs.model ? inputs.model : load_run_model(config.model);
  auto model = std::dynamic_pointer_cast<model::CausalLMImpl>(inputs.peft_model->model_ptr());
  RANKTUNE_CHECK(model != nullptr, "the PeftModel given to the Trainer does not wrap a ranktune causal LM");
  return model;
}

std::optional<peft::LoraConfig> setup_adapter_config(const RunConfig& config, const TrainerInputs& inputs) {
  if (inputs.peft_model || config.adapter.full()) return std::nullopt;
  if (config.adapter.init_from.empty()) return config.adapter_config();
  const fs::path saved = fs::path(config.adapter.init_from) / "adapter_config.json";
  RANKTUNE_CHECK_CTX(fs::exists(saved), (ErrorContext{config.adapter.init_from, "adapter.init_from", -1}),
                     "has no adapter_config.json: give the directory of a saved adapter (e.g. a `ranktune train` run)");
  return std::nullopt;
}

TrainedWeights setup_adapter(const RunConfig& config, const TrainerInputs& inputs,
                             const std::shared_ptr<model::CausalLMImpl>& model,
                             const std::optional<peft::LoraConfig>& adapter) {
  torch::manual_seed(config.train.seed);  // adapter initialisation and dropout
  TrainedWeights out;
  if (inputs.peft_model) {
    out.peft = inputs.peft_model;
    RANKTUNE_CHECK(!out.peft->active_adapters().empty(), "the PeftModel given to the Trainer has no active adapter");
    out.adapter_name = out.peft->active_adapters()[0];
  } else if (!config.adapter.init_from.empty()) {
    out.peft = std::make_shared<peft::PeftModel>(
        peft::PeftModel::from_pretrained(model, config.adapter.init_from, out.adapter_name, /*is_trainable=*/true));
    log_info("adapter.init_from: training on from the adapter in " + config.adapter.init_from);
  } else if (adapter) {
    out.peft = std::make_shared<peft::PeftModel>(model, *adapter, out.adapter_name);
  } else {
    // A model quantized before it reached the trainer (Python's from_pretrained(quantize=...)).
    for (const auto& [name, linear] : peft::find_linears(*model)) {
      if (linear->quantized())
        throw Error("full fine-tuning (adapter.method: full) trains every weight, but " + name +
                    "'s weight is quantized and frozen: train an adapter on a quantized base (LoRA/DoRA), or load "
                    "the model without quantize");
    }
    for (auto& p : model->parameters()) p.set_requires_grad(true);
  }
  if (config.train.gradient_checkpointing) model->set_gradient_checkpointing(true);
  return out;
}

torch::Device setup_device(const ModelSection& m, const Communicator* communicator) {
  if (m.device == "cpu") return torch::Device(torch::kCPU);
  RANKTUNE_CHECK_CTX(torch::cuda::is_available(), (ErrorContext{"", "model.device", -1}), "is ", m.device,
                     " but this LibTorch has no CUDA support or no GPU is visible");
  int index = 0;
  if (m.device != "cuda") index = std::stoi(m.device.substr(5));
  else if (communicator) index = DistributedEnv::from_environment().value_or(DistributedEnv{}).local_rank;
  RANKTUNE_CHECK_CTX(index < static_cast<int>(torch::cuda::device_count()), (ErrorContext{"", "model.device", -1}),
                     "cuda:", index, " does not exist: ", torch::cuda::device_count(), " GPU(s) visible");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

TrainingData setup_training_data(const RunConfig& config, const RunExamples& examples,
                                 const tokenizer::Tokenizer& tokenizer, const prompt::PromptTemplate& prompt_template,
                                 int64_t world_size) {
  // A template that writes its own BOS/end-of-turn markers gets no extra ones.
  data::TokenizeOptions tokenize;
  tokenize.max_length = config.data.max_length;
  tokenize.overlong = config.data.overlong == "truncate" ? data::Overlong::truncate : data::Overlong::skip;
  tokenize.add_bos = !prompt_template.text_has_bos();
  tokenize.add_eos = prompt_template.format() == prompt::ChatFormat::plain;
  TrainingData out;
  data::TokenizeReport validation_report;
  if (!examples.train_records.empty()) {
    const DataSection& d = config.data;
    out.train = tokenize_sft_records(examples.train_records, d.train_file, d, prompt_template, tokenizer, tokenize,
                                     &out.train_report);
    out.validation = tokenize_sft_records(examples.validation_records, d.eval_file.empty() ? d.train_file : d.eval_file,
                                          d, prompt_template, tokenizer, tokenize, &validation_report);
  } else {
    out.train = data::tokenize_pairs(rendered(examples.train, prompt_template), tokenizer, tokenize, &out.train_report);
    out.validation = data::tokenize_pairs(rendered(examples.validation, prompt_template), tokenizer, tokenize, &validation_report);
  }
  log_info("training data: " + out.train_report.describe());
  RANKTUNE_CHECK_CTX(!out.train.empty(), (ErrorContext{config.data.train_file, "data.max_length", -1}),
                     "every training example is longer than data.max_length=", config.data.max_length,
                     " tokens; raise it or set data.overlong=truncate");
  if (config.data.packing) {
    const size_t examples_count = out.train.size();
    out.train = data::pack_examples(out.train, config.data.max_length);
    // Validation rows are packed the same way: the same loss per token, in fewer forward passes.
    out.validation = data::pack_examples(out.validation, config.data.max_length);
    log_info(c10::str("packing: ", examples_count, " examples in ", out.train.size(), " sequences of up to ",
                      config.data.max_length, " tokens"));
  }
  std::vector<int64_t> lengths;
  for (const auto& e : out.train) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
  out.plan.emplace(lengths, config.train.batch_size * world_size, config.train.seed, config.data.group_by_length);
  out.pad_token_id = tokenizer.pad_token_id().value_or(tokenizer.eos_token_id().value_or(0));
  return out;
}

StepPlan setup_steps(const TrainSection& t, int64_t batches_per_epoch) {
  StepPlan out;
  const int64_t micro_batches = t.epochs * batches_per_epoch;
  out.total_steps = t.max_steps > 0 ? t.max_steps : std::max<int64_t>(1, micro_batches / t.gradient_accumulation_steps);
  out.warmup_steps = t.warmup_steps > 0 ? t.warmup_steps
                                        : static_cast<int64_t>(std::ceil(t.warmup_ratio * static_cast<double>(out.total_steps)));
  return out;
}

void resume_session(TrainingSession& s, const TrainSection& t) {
  const std::string& dir = s.resume_dir;
  if (s.weights.peft) {
    peft::restore_adapter_weights(*s.model, s.weights.peft->config(s.weights.adapter_name), s.weights.adapter_name, dir);
  } else {
    model::load_weights(*s.model, dir, /*strict=*/true);
  }
  s.optimizer->load((fs::path(dir) / "optimizer.pt").string());
  const TrainerState checkpoint = load_checkpoint_state(dir);  // also restores the RNG
  RANKTUNE_CHECK_CTX(checkpoint.step <= s.progress.total_steps,
                     (ErrorContext{dir, t.max_steps > 0 ? "train.max_steps" : "train.epochs", -1}),
                     "the checkpoint is at step ", checkpoint.step, " but this recipe stops at step ",
                     s.progress.total_steps, "; raise it to continue the run");
  // The total and the recipe values come from this recipe, the position from the checkpoint
  // (warmup and decay are re-derived from the new total for the remaining steps).
  TrainerState resumed = checkpoint;
  resumed.total_steps = s.progress.total_steps;
  resumed.recipe = s.progress.recipe;
  resumed.world_size = s.progress.world_size;
  if (checkpoint.world_size != s.progress.world_size) {
    log_warning(c10::str("resuming a run of ", checkpoint.world_size, " worker(s) with ", s.progress.world_size,
                         ": the global batch is now train.batch_size × ", s.progress.world_size, "; the data continues "
                         "from global batch ", checkpoint.micro_step, " of the new order, so the rest of this epoch "
                         "differs (docs/distributed.md)"));
  }
  s.progress = std::move(resumed);
  log_info("resuming from " + dir + " at step " + std::to_string(s.progress.step));
}

TrainingSession setup_session(const RunConfig& config, const TrainerInputs& inputs) {
  const TrainSection& t = config.train;
  configure_threads(worker_threads(t.threads));
  TrainingSession s;
  s.progress.world_size = inputs.communicator ? inputs.communicator->world_size() : 1;
  s.device = setup_device(config.model, inputs.communicator.get());  // before anything loads
  // Inputs first: the examples and their split, the adapter's config, the model's files
  // (model.download), the tokenizer and template, the tokens; the model last.
  s.examples = setup_examples(config, inputs);
  const std::optional<peft::LoraConfig> adapter = setup_adapter_config(config, inputs);
  setup_model_files(config, inputs);
  s.tokenizer = setup_tokenizer(config, inputs);
  s.prompt_template = setup_template(config, *s.tokenizer);
  s.progress.recipe = fixed_recipe_values(config, inputs);
  s.resume_dir = setup_run_directory(t, s.progress.recipe);

  // Tokenized before the model loads: a record the template cannot render fails fast.
  s.data = setup_training_data(config, s.examples, *s.tokenizer, *s.prompt_template, s.progress.world_size);

  s.model = setup_model(config, inputs);
  s.model_dir = loaded_model_directory(config.model);
  s.weights = setup_adapter(config, inputs, s.model, adapter);
  if (config.model.device != "cpu") s.model->to(s.device);  // the adapter's tensors with it
  s.steps = setup_steps(t, s.data.plan->batches_per_epoch());
  s.progress.total_steps = s.steps.total_steps;
  s.progress.seed = t.seed;
  s.optimizer = std::make_unique<TrainingOptimizer>(*s.model, t);
  if (!s.resume_dir.empty()) resume_session(s, t);
  // One starting point on every worker (a model given in memory may differ between them).
  if (inputs.communicator) broadcast_parameters(*inputs.communicator, s.optimizer->parameters());
  return s;
}

// ---- the run directory -----------------------------------------------------------------------------------

void open_run_directory(const RunConfig& config, const TrainingSession& s) {
  const TrainSection& t = config.train;
  if (s.resume_dir.empty() && t.overwrite_output_dir && !run_files(t.output_dir).empty()) {
    log_info("train.overwrite_output_dir: replacing the run in " + t.output_dir);
    remove_run_files(t.output_dir);
  }
  if (const int64_t stale = remove_stale_temporaries(t.output_dir); stale > 0) {
    log_info("removed " + std::to_string(stale) + " unfinished checkpoint(s) left in " + t.output_dir +
             " by an interrupted run");
  }
  std::error_code error;
  fs::create_directories(t.output_dir, error);
  if (error) {
    throw Error("cannot create the run directory: " + error.message(), ErrorContext{t.output_dir, "train.output_dir", -1});
  }
  io::write_file_atomic((fs::path(t.output_dir) / "config.yaml").string(), config.to_yaml());
}

void save_trained_weights(const TrainingSession& s, const std::string& dir) {
  if (s.weights.peft) {
    s.weights.peft->save_pretrained(dir);
    return;
  }
  model::save_model_weights(*s.model, (fs::path(dir) / "model.safetensors").string());
  // A model directory, as transformers' save_pretrained writes: model.path can load it.
  if (!s.model_dir.empty()) {
    const torch::Dtype written = s.model->parameters().front().scalar_type();
    model::write_model_directory_files(s.model_dir, dir, *s.model, written);
  }
}

std::string loaded_model_directory(const ModelSection& model) {
  if (model.path.empty()) return "";
  try {
    const std::string dir = io::resolve_pretrained(model.path);
    return fs::exists(fs::path(dir) / "config.json") ? dir : "";
  } catch (const Error&) {
    return "";  // a model given in memory, its model.path not found here: only the weights are written
  }
}

bool save_session_checkpoint(const TrainingSession& s, const TrainSection& t) {
  try {
    save_checkpoint(t.output_dir, s.progress, [&](const std::string& tmp) {
      save_trained_weights(s, tmp);
      s.optimizer->save((fs::path(tmp) / "optimizer.pt").string());
    });
  } catch (const std::exception& e) {
    log_warning(c10::str("checkpoint-", s.progress.step, " was not saved (", e.what(),
                         "); the previous checkpoint is kept"));
    return false;
  }
  prune_checkpoints(t.output_dir, t.keep_last);
  return true;
}

// ---- signals -------------------------------------------------------------------------------------------------

namespace {
std::atomic<int> g_signal{0};
extern "C" void on_stop_signal(int signo) { g_signal = signo; }
}  // namespace

StopSignals::StopSignals() {
  g_signal = 0;
  for (size_t i = 0; i < kSignals.size(); ++i) previous_[i] = std::signal(kSignals[i], on_stop_signal);
}

StopSignals::~StopSignals() {
  for (size_t i = 0; i < kSignals.size(); ++i) std::signal(kSignals[i], previous_[i]);
}

int StopSignals::received() const { return g_signal; }

}  // namespace ranktune::train
