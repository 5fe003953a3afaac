#include "ranktune/train/trainer.h"

#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/progress.h"
#include "ranktune/core/threads.h"
#include "ranktune/data/batching.h"
#include "ranktune/data/examples.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/hub_download.h"
#include "ranktune/io/json.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/prompt/template.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "checkpoint.h"
#include "optimizer.h"
#include "sft_data.h"
#include "step.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>

namespace ranktune::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// SIGINT (Ctrl-C), SIGTERM and SIGHUP (timeout, docker stop, batch schedulers, a closed terminal)
// only record the signal; the loop saves a checkpoint at the next step boundary.
std::atomic<int> g_signal{0};
extern "C" void on_stop_signal(int signo) { g_signal = signo; }

class StopSignalScope {
 public:
  StopSignalScope() {
    g_signal = 0;
    for (size_t i = 0; i < kSignals.size(); ++i) previous_[i] = std::signal(kSignals[i], on_stop_signal);
  }
  ~StopSignalScope() {
    for (size_t i = 0; i < kSignals.size(); ++i) std::signal(kSignals[i], previous_[i]);
  }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<void (*)(int), 3> previous_{};
};

bool has_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") || fs::exists(fs::path(dir) / "model.safetensors.index.json");
}

std::vector<data::Example> load_examples(const std::string& path, const DataSection& d, int64_t limit) {
  data::LoadOptions o;
  o.gsm8k_answer = d.format == "gsm8k";
  o.question_field = d.question_field;
  o.rationale_field = d.rationale_field;
  o.answer_field = d.answer_field;
  o.strip_calculator = d.strip_calculator;
  o.limit = limit;
  return data::load_jsonl(path, o);
}

// The recipe values a checkpoint records and a resume must match: what shapes the model, the
// adapter, the data and its order. Inputs given in memory (a PeftModel, examples) are not
// described by the recipe, so their keys are left out.
std::vector<std::pair<std::string, std::string>> fixed_recipe_values(const RunConfig& config, const TrainerInputs& inputs) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [key, value] : config.key_values()) {
    const bool fixed = key == "model.path" || key == "model.init_seed" || key == "template" || key == "train.seed" ||
                       key == "train.batch_size" || key == "train.gradient_accumulation_steps" ||
                       (key.rfind("adapter.", 0) == 0 && !inputs.peft_model) ||
                       (key.rfind("data.", 0) == 0 && !inputs.train_examples);
    if (fixed) out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

// The loss of the first and the last logged training interval of the whole run (every segment).
std::pair<double, double> run_losses(const std::vector<MetricsRow>& rows) {
  std::optional<double> first;
  double last = 0;
  for (const auto& row : rows) {
    const auto loss = row.values.find("loss");
    if (loss == row.values.end()) continue;
    if (!first) first = loss->second;
    last = loss->second;
  }
  return {first.value_or(0.0), last};
}

}  // namespace

std::shared_ptr<model::CausalLMImpl> load_run_model(const ModelSection& section) {
  torch::Dtype dtype;
  try {
    dtype = parse_dtype(section.dtype);
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{"", "model.dtype", -1});
  }
  if (has_weights(io::resolve_pretrained(section.path))) return model::load_causal_lm(section.path, model::LoadOptions().dtype(dtype));
  torch::manual_seed(section.init_seed);
  auto model = model::create_causal_lm(model::ModelConfig::load(section.path), dtype);
  model->set_name_or_path(section.path);
  log_info(section.path + " has no weights: initialised randomly from model.init_seed=" + std::to_string(section.init_seed));
  return model;
}

std::vector<data::Example> evaluation_questions(const RunConfig& config) {
  if (!config.eval.file.empty()) return load_examples(config.eval.file, config.data, config.eval.limit);
  std::vector<data::Example> held_out;
  if (!config.data.eval_file.empty()) {
    held_out = load_examples(config.data.eval_file, config.data, config.data.validation_size);
  } else {
    held_out = data::split_validation(load_examples(config.data.train_file, config.data, config.data.limit),
                                      config.data.validation_size, config.train.seed)
                   .second;
  }
  if (config.eval.limit > 0 && static_cast<int64_t>(held_out.size()) > config.eval.limit) held_out.resize(static_cast<size_t>(config.eval.limit));
  return held_out;
}

struct Trainer::State {
  std::optional<tokenizer::Tokenizer> tokenizer;
  std::shared_ptr<model::CausalLMImpl> model;
  std::shared_ptr<peft::PeftModel> peft;
  std::string adapter_name = "default";
  std::unique_ptr<prompt::PromptTemplate> prompt_template;
  std::vector<data::Example> train_examples, validation_examples, test_examples;
  std::vector<data::TokenizedExample> train_tokens, validation_tokens;
  data::TokenizeReport train_report;
  std::unique_ptr<data::BatchPlan> plan;
  std::unique_ptr<TrainingOptimizer> optimizer;
  TrainerState progress;
  int64_t warmup_steps = 0;
  int64_t pad_token_id = 0;
  std::string resume_dir;
  std::string final_eval;  // EvalSummary::to_json() of the final evaluation
  std::vector<std::function<void(const MetricsRow&)>> callbacks;
};

Trainer::Trainer(RunConfig config, TrainerInputs inputs)
    : config_(std::move(config)), inputs_(std::move(inputs)), state_(std::make_unique<State>()) {}
Trainer::~Trainer() = default;

std::shared_ptr<model::CausalLMImpl> Trainer::model() const { return state_->model; }
const tokenizer::Tokenizer& Trainer::tokenizer() const {
  RANKTUNE_CHECK(state_->tokenizer.has_value(), "call Trainer::setup() first");
  return *state_->tokenizer;
}
peft::PeftModel* Trainer::peft_model() const { return state_->peft.get(); }
void Trainer::add_callback(std::function<void(const MetricsRow&)> callback) { state_->callbacks.push_back(std::move(callback)); }

// ---- setup -----------------------------------------------------------------------------------------

void Trainer::setup() {
  State& s = *state_;
  const TrainSection& t = config_.train;
  configure_threads(static_cast<int>(t.threads));

  // Everything is read and checked before the output directory is touched; the adapter's config
  // before anything is loaded.
  std::optional<peft::LoraConfig> adapter;
  if (!inputs_.peft_model && config_.adapter.method != "full") adapter = config_.adapter_config();
  if (config_.model.download && !inputs_.model && !inputs_.peft_model) io::download_if_missing(config_.model.path);
  s.tokenizer = inputs_.tokenizer ? *inputs_.tokenizer : tokenizer::Tokenizer::from_pretrained(config_.model.path);
  s.prompt_template = std::make_unique<prompt::PromptTemplate>(prompt::PromptTemplate::load(config_.template_name));
  const bool sft = !inputs_.train_examples && is_sft_format(config_.data);  // tokenized with its own loader below
  if (inputs_.train_examples) {
    s.train_examples = *inputs_.train_examples;
    if (inputs_.eval_examples) s.validation_examples = *inputs_.eval_examples;
  } else if (!sft) {
    auto all = load_examples(config_.data.train_file, config_.data, config_.data.limit);
    if (inputs_.eval_examples) {
      s.train_examples = std::move(all);
      s.validation_examples = *inputs_.eval_examples;
    } else if (!config_.data.eval_file.empty()) {
      s.train_examples = std::move(all);
      s.validation_examples = load_examples(config_.data.eval_file, config_.data, config_.data.validation_size);
    } else {
      std::tie(s.train_examples, s.validation_examples) =
          data::split_validation(all, config_.data.validation_size, t.seed);
    }
  }
  RANKTUNE_CHECK(sft || !s.train_examples.empty(), "no training examples");
  if (config_.eval.options.max_new_tokens > 0) {
    if (!config_.eval.file.empty()) s.test_examples = evaluation_questions(config_);
    else if (!s.validation_examples.empty()) s.test_examples = s.validation_examples;
    else if (!inputs_.train_examples && !sft) s.test_examples = evaluation_questions(config_);
    // In-memory training data without validation examples or eval.file: nothing to evaluate on.
    const int64_t limit = config_.eval.limit;
    if (limit > 0 && static_cast<int64_t>(s.test_examples.size()) > limit) s.test_examples.resize(static_cast<size_t>(limit));
  }
  s.progress.recipe = fixed_recipe_values(config_, inputs_);
  if (!t.resume_from.empty()) {
    s.resume_dir = resolve_resume_path(t.resume_from, t.output_dir);
    check_resume_recipe(s.resume_dir, s.progress.recipe);
  } else if (!t.overwrite_output_dir) {
    const auto existing = run_files(t.output_dir);
    if (!existing.empty()) {
      std::string names;
      for (const auto& name : existing) names += (names.empty() ? "" : ", ") + name;
      throw Error(c10::str("holds another run (", names, "); continue it with train.resume_from=latest, "
                           "or replace it with train.overwrite_output_dir=true"),
                  ErrorContext{t.output_dir, "train.output_dir", -1});
    }
  }

  s.model = inputs_.peft_model ? std::dynamic_pointer_cast<model::CausalLMImpl>(inputs_.peft_model->model_ptr())
            : inputs_.model    ? inputs_.model
                               : load_run_model(config_.model);
  RANKTUNE_CHECK(s.model != nullptr, "the PeftModel given to the Trainer does not wrap a ranktune causal LM");
  torch::manual_seed(t.seed);  // adapter initialisation and dropout
  if (inputs_.peft_model) {
    s.peft = inputs_.peft_model;
    RANKTUNE_CHECK(!s.peft->active_adapters().empty(), "the PeftModel given to the Trainer has no active adapter");
    s.adapter_name = s.peft->active_adapters()[0];
  } else if (config_.adapter.method == "full") {
    for (auto& p : s.model->parameters()) p.set_requires_grad(true);
  } else {
    s.peft = std::make_shared<peft::PeftModel>(s.model, *adapter, "default");
  }
  if (config_.train.gradient_checkpointing) s.model->set_gradient_checkpointing(true);

  // Text -> tokens. A template that writes its own BOS/end-of-turn markers gets no extra ones.
  std::vector<data::TextPair> train_pairs, validation_pairs;
  for (const auto& e : s.train_examples) {
    train_pairs.push_back({s.prompt_template->render_prompt(e.question), s.prompt_template->render_response(e.rationale, e.answer)});
  }
  for (const auto& e : s.validation_examples) {
    validation_pairs.push_back({s.prompt_template->render_prompt(e.question), s.prompt_template->render_response(e.rationale, e.answer)});
  }
  data::TokenizeOptions tokenize;
  tokenize.max_length = config_.data.max_length;
  tokenize.overlong = config_.data.overlong == "truncate" ? data::Overlong::truncate : data::Overlong::skip;
  tokenize.add_bos = !s.prompt_template->text_has_bos();
  tokenize.add_eos = s.prompt_template->format() == prompt::ChatFormat::plain;
  if (sft) {
    SftData d = load_sft_data(config_.data, t.seed, template_chat(*s.prompt_template), *s.tokenizer, tokenize);
    s.train_tokens = std::move(d.train);
    s.validation_tokens = std::move(d.validation);
    s.train_report = d.train_report;
  } else {
    s.train_tokens = data::tokenize_pairs(train_pairs, *s.tokenizer, tokenize, &s.train_report);
    s.validation_tokens = data::tokenize_pairs(validation_pairs, *s.tokenizer, tokenize);
  }
  log_info("training data: " + s.train_report.describe());
  if (config_.data.packing && !s.train_tokens.empty()) {
    const size_t examples = s.train_tokens.size();
    s.train_tokens = data::pack_examples(s.train_tokens, config_.data.max_length);
    log_info(c10::str("packing: ", examples, " examples in ", s.train_tokens.size(), " sequences of up to ", config_.data.max_length, " tokens"));
  }
  RANKTUNE_CHECK_CTX(!s.train_tokens.empty(), (ErrorContext{config_.data.train_file, "data.max_length", -1}),
                     "every training example is longer than data.max_length=", config_.data.max_length,
                     " tokens; raise it or set data.overlong=truncate");
  std::vector<int64_t> lengths;
  for (const auto& e : s.train_tokens) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
  s.plan = std::make_unique<data::BatchPlan>(lengths, t.batch_size, t.seed, config_.data.group_by_length);
  s.pad_token_id = s.tokenizer->pad_token_id().value_or(s.tokenizer->eos_token_id().value_or(0));

  const int64_t micro_batches = t.epochs * s.plan->batches_per_epoch();
  s.progress.total_steps = t.max_steps > 0 ? t.max_steps : std::max<int64_t>(1, micro_batches / t.gradient_accumulation_steps);
  s.progress.seed = t.seed;
  s.warmup_steps = t.warmup_steps > 0 ? t.warmup_steps
                                      : static_cast<int64_t>(std::ceil(t.warmup_ratio * static_cast<double>(s.progress.total_steps)));
  s.optimizer = std::make_unique<TrainingOptimizer>(*s.model, t);

  if (!s.resume_dir.empty()) {
    if (s.peft) {
      // The adapter's weights and the optimizer state come from the checkpoint.
      peft::PeftModel restored = peft::PeftModel::from_pretrained(
          s.model, s.resume_dir, "resumed", /*is_trainable=*/false);
      peft::copy_adapter_weights(*s.model, "resumed", s.adapter_name);
      restored.delete_adapter("resumed");
      s.peft->set_adapter(s.adapter_name);
    } else {
      model::load_weights(*s.model, s.resume_dir, /*strict=*/true);
    }
    s.optimizer->load((fs::path(s.resume_dir) / "optimizer.pt").string());
    // The total comes from this recipe, not the checkpoint: a larger max_steps or epochs extends
    // the run (warmup and decay are re-derived from the new total for the remaining steps).
    const TrainerState planned = s.progress;
    s.progress = load_checkpoint_state(s.resume_dir);
    RANKTUNE_CHECK_CTX(s.progress.step <= planned.total_steps,
                       (ErrorContext{s.resume_dir, t.max_steps > 0 ? "train.max_steps" : "train.epochs", -1}),
                       "the checkpoint is at step ", s.progress.step, " but this recipe stops at step ",
                       planned.total_steps, "; raise it to continue the run");
    s.progress.total_steps = planned.total_steps;
    s.progress.recipe = planned.recipe;
    log_info("resuming from " + s.resume_dir + " at step " + std::to_string(s.progress.step));
  }
}

// ---- training ----------------------------------------------------------------------------------------

TrainResult Trainer::train() {
  State& s = *state_;
  RANKTUNE_CHECK(s.model != nullptr, "call Trainer::setup() before train()");
  const TrainSection& t = config_.train;
  if (s.resume_dir.empty() && t.overwrite_output_dir && !run_files(t.output_dir).empty()) {
    log_info("train.overwrite_output_dir: replacing the run in " + t.output_dir);
    remove_run_files(t.output_dir);
  }
  if (const int64_t stale = remove_stale_temporaries(t.output_dir); stale > 0) {
    log_info("removed " + std::to_string(stale) + " unfinished checkpoint(s) left in " + t.output_dir + " by an interrupted run");
  }
  fs::create_directories(t.output_dir);
  io::write_file_atomic((fs::path(t.output_dir) / "config.yaml").string(), config_.to_yaml());
  MetricsLog metrics((fs::path(t.output_dir) / "metrics.jsonl").string(), s.resume_dir.empty() ? -1 : s.progress.step);
  auto emit = [&](const MetricsRow& row) {
    metrics.write(row);
    for (auto& callback : s.callbacks) callback(row);
  };

  std::optional<StopSignalScope> stop_signals;
  stop_signals.emplace();
  stop_requested_ = false;
  s.model->train();
  const auto start = Clock::now();
  const double seconds_before = s.progress.seconds;  // earlier segments of a resumed run
  TrainResult result;
  result.output_dir = t.output_dir;
  ProgressBar bar(s.progress.total_steps, "train", progress_bar_ ? stderr : nullptr);

  // A checkpoint that cannot be written (disk full, permission) costs only that checkpoint: the
  // error names the file and the cause, save_checkpoint removes its temporaries, the previous
  // checkpoint stays (nothing is pruned) and training goes on.
  auto save = [&] {
    s.progress.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - start).count();
    try {
      save_checkpoint(t.output_dir, s.progress, [&](const std::string& tmp) {
        if (s.peft) s.peft->save_pretrained(tmp);
        else model::save_model_weights(*s.model, (fs::path(tmp) / "model.safetensors").string());
        s.optimizer->save((fs::path(tmp) / "optimizer.pt").string());
      });
    } catch (const std::exception& e) {
      log_warning(c10::str("checkpoint-", s.progress.step, " was not saved (", e.what(),
                           "); the previous checkpoint is kept"));
      return;
    }
    prune_checkpoints(t.output_dir, t.keep_last);
  };

  const int64_t batches_per_epoch = s.plan->batches_per_epoch();
  int64_t cached_epoch = -1;
  std::vector<std::vector<int64_t>> epoch_batches;
  double interval_loss = 0;
  int64_t interval_steps = 0, interval_tokens = 0;
  auto interval_start = Clock::now();

  const bool bf16 = t.precision == "bf16";
  const MicroBatchLoss loss_of = [&](const data::Batch& batch) {
    at::autocast::set_cpu_enabled(bf16);
    if (bf16) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    torch::Tensor loss = s.model->forward(batch.input_ids, batch.attention_mask, batch.labels, nullptr, /*need_logits=*/false).loss;
    at::autocast::set_cpu_enabled(false);
    return loss;
  };
  while (s.progress.step < s.progress.total_steps) {
    std::vector<data::Batch> micro_batches;
    for (int64_t micro = 0; micro < t.gradient_accumulation_steps; ++micro) {
      const int64_t position = s.progress.micro_step++;
      const int64_t epoch = position / batches_per_epoch;
      if (epoch != cached_epoch) {
        epoch_batches = s.plan->epoch_batches(epoch);
        cached_epoch = epoch;
      }
      std::vector<const data::TokenizedExample*> members;
      for (int64_t index : epoch_batches[static_cast<size_t>(position % batches_per_epoch)]) {
        members.push_back(&s.train_tokens[static_cast<size_t>(index)]);
      }
      micro_batches.push_back(data::collate(members, s.pad_token_id));
      interval_tokens += micro_batches.back().tokens;
    }
    const StepResult step = optimizer_step(*s.optimizer, micro_batches, loss_of, t, s.warmup_steps, s.progress);
    if (step.applied) {
      interval_loss += step.loss;
      ++interval_steps;
    }

    if (s.progress.nan_streak >= t.max_nan_steps) {
      result.status = c10::str("stopped: ", s.progress.nan_streak, " non-finite steps in a row");
      break;
    }
    const bool last = s.progress.step == s.progress.total_steps;
    if (interval_steps > 0 && (s.progress.step % t.log_every == 0 || last)) {
      const double seconds = std::chrono::duration<double>(Clock::now() - interval_start).count();
      MetricsRow row;
      row.step = s.progress.step;
      row.values["loss"] = interval_loss / static_cast<double>(interval_steps);
      row.values["lr"] = s.optimizer->lr();
      row.values["grad_norm"] = step.grad_norm;
      row.values["tokens_per_second"] = static_cast<double>(interval_tokens) / std::max(seconds, 1e-9);
      row.values["epoch"] = static_cast<double>(s.progress.micro_step) / static_cast<double>(batches_per_epoch);
      emit(row);
      bar.update(s.progress.step, {{"loss", c10::str(std::round(row.values["loss"] * 1000) / 1000)},
                                   {"lr", c10::str(row.values["lr"])},
                                   {"tok/s", std::to_string(static_cast<int64_t>(row.values["tokens_per_second"]))}});
      interval_loss = 0;
      interval_steps = interval_tokens = 0;
      interval_start = Clock::now();
    }
    if (t.eval_every > 0 && s.progress.step % t.eval_every == 0 && !last) emit(evaluate_during_training());
    const bool stopping = g_signal != 0 || stop_requested_;
    if ((t.save_every > 0 && s.progress.step % t.save_every == 0) || stopping) save();
    if (stopping) {
      result.status = "interrupted";
      result.signal = g_signal;
      break;
    }
  }
  bar.finish();
  result.steps = s.progress.step;
  if (result.status.empty()) result.status = "completed";
  if (result.status == "completed") {
    if (s.peft) s.peft->save_pretrained(t.output_dir);
    else model::save_model_weights(*s.model, (fs::path(t.output_dir) / "model.safetensors").string());
    // The trained weights are saved: the final evaluation runs under the previous handlers, so
    // Ctrl-C stops it at once instead of being held until the last question.
    stop_signals.reset();
    finish_run(metrics, emit);
  }
  result.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - start).count();
  std::tie(result.first_loss, result.last_loss) = run_losses(metrics.rows());
  write_summary(result);
  return result;
}

// ---- evaluation and results -------------------------------------------------------------------------

namespace {

// The final evaluation uses eval.* as given; evaluations during training skip the extra samples.
eval::EvalOptions during_training_options(const EvalSection& e) {
  eval::EvalOptions o = e.options;
  o.samples = 0;
  o.pass_at_k.clear();
  o.progress = false;
  return o;
}

void add_eval_values(MetricsRow& row, const eval::EvalSummary& summary) {
  row.values["eval_accuracy_strict"] = summary.accuracy_strict;
  row.values["eval_accuracy_flexible"] = summary.accuracy_flexible;
  row.values["eval_format_rate"] = summary.format_rate;
  if (summary.majority_accuracy) row.values["eval_accuracy_majority"] = *summary.majority_accuracy;
  for (const auto& [k, v] : summary.pass_at_k) row.values["eval_pass_at_" + std::to_string(k)] = v;
}

}  // namespace

double Trainer::validation_loss() {
  State& s = *state_;
  if (s.validation_tokens.empty()) return NAN;
  at::NoGradGuard no_grad;
  const bool was_training = s.model->is_training();
  s.model->eval();
  double weighted = 0;
  int64_t counted = 0;
  const auto batch_size = static_cast<size_t>(config_.train.batch_size);
  for (size_t start = 0; start < s.validation_tokens.size(); start += batch_size) {
    std::vector<const data::TokenizedExample*> members;
    for (size_t i = start; i < std::min(s.validation_tokens.size(), start + batch_size); ++i) members.push_back(&s.validation_tokens[i]);
    const data::Batch batch = data::collate(members, s.pad_token_id);
    if (batch.loss_tokens == 0) continue;
    const double loss = s.model->forward(batch.input_ids, batch.attention_mask, batch.labels, nullptr, /*need_logits=*/false).loss.item<double>();
    weighted += loss * static_cast<double>(batch.loss_tokens);
    counted += batch.loss_tokens;
  }
  s.model->train(was_training);
  return counted > 0 ? weighted / static_cast<double>(counted) : NAN;
}

std::map<std::string, double> Trainer::evaluate() {
  RANKTUNE_CHECK(state_->model != nullptr, "call Trainer::setup() before evaluate()");
  State& s = *state_;
  std::map<std::string, double> out;
  out["eval_loss"] = validation_loss();
  const std::vector<data::Example>& questions = s.test_examples.empty() ? s.validation_examples : s.test_examples;
  if (!questions.empty() && config_.eval.options.max_new_tokens > 0) {
    eval::EvalOptions options = during_training_options(config_.eval);
    options.progress = progress_bar_;
    MetricsRow row;
    add_eval_values(row, eval::evaluate_gsm8k(*s.model, *s.tokenizer, *s.prompt_template, questions, options));
    out.insert(row.values.begin(), row.values.end());
  }
  return out;
}

MetricsRow Trainer::evaluate_during_training() {
  State& s = *state_;
  MetricsRow row;
  row.step = s.progress.step;
  row.values["eval_loss"] = validation_loss();
  const int64_t n = std::min<int64_t>(config_.eval.during_training, static_cast<int64_t>(s.validation_examples.size()));
  if (n > 0) {
    std::vector<data::Example> subset(s.validation_examples.begin(), s.validation_examples.begin() + n);
    add_eval_values(row, eval::evaluate_gsm8k(*s.model, *s.tokenizer, *s.prompt_template, subset, during_training_options(config_.eval)));
  }
  return row;
}

void Trainer::finish_run(MetricsLog& metrics, const std::function<void(const MetricsRow&)>& emit) {
  State& s = *state_;
  const TrainSection& t = config_.train;
  MetricsRow row;
  row.step = s.progress.step;
  row.values["eval_loss"] = validation_loss();
  if (!s.test_examples.empty()) {
    const eval::EvalSummary summary = eval::evaluate_gsm8k(*s.model, *s.tokenizer, *s.prompt_template, s.test_examples,
                                                           config_.eval.options,
                                                           (fs::path(t.output_dir) / "predictions.jsonl").string());
    add_eval_values(row, summary);
    s.final_eval = summary.to_json();
  }
  emit(row);
  write_training_curve(metrics.rows(), (fs::path(t.output_dir) / "training-curve.svg").string(),
                       c10::str(config_.adapter.training_method(), " on ", config_.model.path, " with ", config_.template_name));
}

void Trainer::write_summary(const TrainResult& result) {
  State& s = *state_;
  nlohmann::ordered_json j;
  j["status"] = result.status;
  j["steps"] = result.steps;
  j["total_steps"] = s.progress.total_steps;
  j["first_loss"] = result.first_loss;
  j["last_loss"] = result.last_loss;
  j["loss_drop"] = result.first_loss > 0 ? 1.0 - result.last_loss / result.first_loss : 0.0;
  j["seconds"] = result.seconds;
  j["method"] = config_.adapter.training_method();
  j["model"] = config_.model.path;
  j["template"] = config_.template_name;
  j["trainable_parameters"] = s.optimizer->parameter_count();
  j["train_examples"] = s.train_report.total;
  j["train_examples_truncated"] = s.train_report.truncated;
  j["train_examples_skipped"] = s.train_report.skipped;
  j["validation_examples"] = static_cast<int64_t>(s.validation_examples.size());
  if (!s.final_eval.empty()) j["eval"] = nlohmann::ordered_json::parse(s.final_eval);
  io::write_file_atomic((fs::path(config_.train.output_dir) / "summary.json").string(), j.dump(2) + "\n");
}

}  // namespace ranktune::train
