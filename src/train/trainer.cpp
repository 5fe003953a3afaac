#include "ranktune/train/trainer.h"

#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/progress.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/json.h"
#include "ranktune/model/causal_lm.h"
#include "precision.h"
#include "session.h"
#include "step.h"

#include <chrono>
#include <cmath>
#include <filesystem>

namespace ranktune::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

bool has_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") || fs::exists(fs::path(dir) / "model.safetensors.index.json");
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

// summary.json's "precision": what was asked, what ran, and for `auto` the probe's speeds.
nlohmann::ordered_json precision_json(const PrecisionDecision& d) {
  nlohmann::ordered_json j;
  j["requested"] = precision_name(d.requested);
  j["chosen"] = precision_name(d.chosen);
  if (d.probed) {
    j["probe"] = {{"fp32_gflops", d.fp32_gflops}, {"bf16_gflops", d.bf16_gflops}, {"threads", d.threads},
                  {"min_speedup", kBf16MinSpeedup}};
  }
  return j;
}

}  // namespace

std::shared_ptr<model::CausalLMImpl> load_run_model(const ModelSection& section) {
  torch::Dtype dtype;
  try {
    dtype = parse_dtype(section.dtype);
  } catch (const Error& e) {
    throw e.with_context(ErrorContext{"", "model.dtype", -1});
  }
  const auto options = model::LoadOptions().dtype(dtype).quantize(parse_quant_format(section.quantize))
                           .double_quant(section.double_quant);
  if (section.double_quant && options.quantize() != QuantFormat::nf4) {
    throw Error("model.double_quant applies to model.quantize: nf4 only", ErrorContext{"", "model.double_quant", -1});
  }
  if (has_weights(io::resolve_pretrained(section.path))) return model::load_causal_lm(section.path, options);
  torch::manual_seed(section.init_seed);
  auto model = model::create_causal_lm(model::ModelConfig::load(section.path), options);
  model->set_name_or_path(section.path);
  log_info(section.path + " has no weights: initialised randomly from model.init_seed=" + std::to_string(section.init_seed));
  return model;
}

struct Trainer::State {
  std::optional<TrainingSession> session;
  std::string final_eval;  // Evaluation::summary_json of the final evaluation
  PrecisionDecision precision;  // train.precision as the last train() resolved it
  std::vector<std::function<void(const MetricsRow&)>> callbacks;

  TrainingSession& ready(const char* call) {
    RANKTUNE_CHECK(session.has_value(), "call Trainer::setup() before ", call);
    return *session;
  }
};

Trainer::Trainer(RunConfig config, TrainerInputs inputs)
    : config_(std::move(config)), inputs_(std::move(inputs)), state_(std::make_unique<State>()) {}
Trainer::~Trainer() = default;

std::shared_ptr<model::CausalLMImpl> Trainer::model() const {
  return state_->session ? state_->session->model : nullptr;
}
const tokenizer::Tokenizer& Trainer::tokenizer() const { return *state_->ready("tokenizer()").tokenizer; }
std::shared_ptr<peft::PeftModel> Trainer::peft_model() const {
  return state_->session ? state_->session->weights.peft : nullptr;
}
int64_t Trainer::total_steps() const { return state_->session ? state_->session->progress.total_steps : 0; }
void Trainer::add_callback(std::function<void(const MetricsRow&)> callback) { state_->callbacks.push_back(std::move(callback)); }

void Trainer::setup() {
  state_->session = setup_session(config_, inputs_);
  if (!inputs_.evaluator && !state_->session->examples.test.empty()) {
    log_info("no evaluator given (TrainerInputs::evaluator): evaluations measure the validation loss only");
  }
}

// ---- the training loop ---------------------------------------------------------------------------------
// One run of train(): the run directory opened, then steps until the total, a signal or a stop
// request. Each part is one small method; the state they share lives here.

class Trainer::Loop {
 public:
  explicit Loop(Trainer& trainer)
      : trainer_(trainer),
        s_(trainer.state_->ready("train()")),
        config_(trainer.config_),
        t_(config_.train),
        metrics_(open_run(config_, s_)),
        seconds_before_(s_.progress.seconds),
        bar_(s_.progress.total_steps, "train", trainer.progress_bar_ ? stderr : nullptr) {
    trainer_.state_->precision = decide_precision(t_.precision);
    if (t_.precision != Precision::fp32) log_info(trainer_.state_->precision.describe());
  }

  TrainResult run() {
    signals_.emplace();
    trainer_.stop_requested_ = false;
    s_.model->train();
    std::string status;
    while (status.empty() && s_.progress.step < s_.progress.total_steps) {
      const StepResult step = train_step();
      if (s_.progress.nan_streak >= t_.max_nan_steps) {
        status = c10::str("stopped: ", s_.progress.nan_streak, " non-finite steps in a row");
        break;
      }
      maybe_log(step);
      maybe_evaluate();
      status = maybe_save();
    }
    bar_.finish();
    return finish(status.empty() ? "completed" : status);
  }

 private:
  static MetricsLog open_run(const RunConfig& config, const TrainingSession& s) {
    open_run_directory(config, s);
    return MetricsLog((fs::path(config.train.output_dir) / "metrics.jsonl").string(),
                      s.resume_dir.empty() ? -1 : s.progress.step);
  }

  bool last_step() const { return s_.progress.step == s_.progress.total_steps; }
  bool every(int64_t interval) const { return interval > 0 && s_.progress.step % interval == 0; }
  double seconds() const { return seconds_before_ + std::chrono::duration<double>(Clock::now() - start_).count(); }

  void emit(const MetricsRow& row) {
    metrics_.write(row);
    for (auto& callback : trainer_.state_->callbacks) callback(row);
  }

  // The micro-batches of the next optimizer step, in the plan's order from the data position.
  std::vector<data::Batch> next_micro_batches() {
    const data::BatchPlan& plan = *s_.data.plan;
    std::vector<data::Batch> out;
    for (int64_t micro = 0; micro < t_.gradient_accumulation_steps; ++micro) {
      const int64_t position = s_.progress.micro_step++;
      const int64_t epoch = position / plan.batches_per_epoch();
      if (epoch != cached_epoch_) {
        epoch_batches_ = plan.epoch_batches(epoch);
        cached_epoch_ = epoch;
      }
      std::vector<const data::TokenizedExample*> members;
      for (int64_t index : epoch_batches_[static_cast<size_t>(position % plan.batches_per_epoch())]) {
        members.push_back(&s_.data.train[static_cast<size_t>(index)]);
      }
      out.push_back(data::collate(members, s_.data.pad_token_id));
      interval_.tokens += out.back().tokens;
    }
    return out;
  }

  StepResult train_step() {
    const MicroBatchLoss loss_of = [this](const data::Batch& batch) {
      const AutocastScope autocast(trainer_.state_->precision.chosen);
      return s_.model->forward(batch.input_ids, batch.attention_mask, batch.labels, nullptr, /*need_logits=*/false).loss;
    };
    const StepResult step = optimizer_step(*s_.optimizer, next_micro_batches(), loss_of, t_, s_.steps.warmup_steps, s_.progress);
    if (step.applied) {
      interval_.loss += step.loss;
      ++interval_.steps;
    }
    return step;
  }

  void maybe_log(const StepResult& step) {
    if (interval_.steps == 0 || !(every(t_.log_every) || last_step())) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - interval_.start).count();
    MetricsRow row;
    row.step = s_.progress.step;
    row.values["loss"] = interval_.loss / static_cast<double>(interval_.steps);
    row.values["lr"] = s_.optimizer->lr();
    row.values["grad_norm"] = step.grad_norm;
    row.values["tokens_per_second"] = static_cast<double>(interval_.tokens) / std::max(elapsed, 1e-9);
    row.values["epoch"] = static_cast<double>(s_.progress.micro_step) / static_cast<double>(s_.data.plan->batches_per_epoch());
    emit(row);
    bar_.update(s_.progress.step, {{"loss", c10::str(std::round(row.values["loss"] * 1000) / 1000)},
                                   {"lr", c10::str(row.values["lr"])},
                                   {"tok/s", std::to_string(static_cast<int64_t>(row.values["tokens_per_second"]))}});
    interval_ = Interval{};
  }

  void maybe_evaluate() {
    if (!every(t_.eval_every) || last_step()) return;
    const auto& validation = s_.examples.validation;
    const int64_t n = std::min<int64_t>(config_.eval.during_training, static_cast<int64_t>(validation.size()));
    const std::vector<data::Example> questions(validation.begin(), validation.begin() + n);
    emit(trainer_.evaluation_row(EvaluationKind::during_training, questions));
  }

  // A checkpoint at train.save_every and when a stop is asked for; returns "interrupted" then.
  std::string maybe_save() {
    const bool stopping = signals_->received() != 0 || trainer_.stop_requested_;
    if (every(t_.save_every) || stopping) {
      s_.progress.seconds = seconds();
      save_session_checkpoint(s_, t_);
    }
    if (!stopping) return "";
    signal_ = signals_->received();
    return "interrupted";
  }

  // The trained weights saved; then, for a completed run, the final evaluation (under the previous
  // signal handlers, so Ctrl-C stops it at once) and the curve; the summary either way.
  TrainResult finish(const std::string& status) {
    TrainResult result;
    result.status = status;
    result.signal = signal_;
    result.steps = s_.progress.step;
    result.output_dir = t_.output_dir;
    if (status == "completed") {
      save_trained_weights(s_, t_.output_dir);
      signals_.reset();
      emit(trainer_.evaluation_row(EvaluationKind::final_run, s_.examples.test,
                                   (fs::path(t_.output_dir) / "predictions.jsonl").string()));
      write_training_curve(metrics_.rows(), (fs::path(t_.output_dir) / "training-curve.svg").string(),
                           c10::str(config_.adapter.training_method(), " on ", config_.model.path, " with ",
                                    config_.template_name));
    }
    result.seconds = seconds();
    std::tie(result.first_loss, result.last_loss) = run_losses(metrics_.rows());
    trainer_.write_summary(result);
    return result;
  }

  struct Interval {
    double loss = 0;
    int64_t steps = 0, tokens = 0;
    Clock::time_point start = Clock::now();
  };

  Trainer& trainer_;
  TrainingSession& s_;
  const RunConfig& config_;
  const TrainSection& t_;
  MetricsLog metrics_;
  const Clock::time_point start_ = Clock::now();
  const double seconds_before_;  // earlier segments of a resumed run
  ProgressBar bar_;
  std::optional<StopSignals> signals_;
  int signal_ = 0;
  Interval interval_;
  int64_t cached_epoch_ = -1;
  std::vector<std::vector<int64_t>> epoch_batches_;
};

TrainResult Trainer::train() { return Loop(*this).run(); }

// ---- evaluation and results -------------------------------------------------------------------------

double Trainer::validation_loss() {
  TrainingSession& s = *state_->session;
  const auto& tokens = s.data.validation;
  if (tokens.empty()) return NAN;
  at::NoGradGuard no_grad;
  const bool was_training = s.model->is_training();
  s.model->eval();
  double weighted = 0;
  int64_t counted = 0;
  const auto batch_size = static_cast<size_t>(config_.train.batch_size);
  for (size_t start = 0; start < tokens.size(); start += batch_size) {
    std::vector<const data::TokenizedExample*> members;
    for (size_t i = start; i < std::min(tokens.size(), start + batch_size); ++i) members.push_back(&tokens[i]);
    const data::Batch batch = data::collate(members, s.data.pad_token_id);
    if (batch.loss_tokens == 0) continue;
    const double loss = s.model->forward(batch.input_ids, batch.attention_mask, batch.labels, nullptr, /*need_logits=*/false).loss.item<double>();
    weighted += loss * static_cast<double>(batch.loss_tokens);
    counted += batch.loss_tokens;
  }
  s.model->train(was_training);
  return counted > 0 ? weighted / static_cast<double>(counted) : NAN;
}

MetricsRow Trainer::evaluation_row(EvaluationKind kind, const std::vector<data::Example>& questions,
                                   const std::string& predictions_path) {
  TrainingSession& s = *state_->session;
  MetricsRow row;
  row.step = s.progress.step;
  row.values["eval_loss"] = validation_loss();
  if (questions.empty() || !inputs_.evaluator) return row;
  const Evaluation evaluation = inputs_.evaluator->evaluate(
      {*s.model, *s.tokenizer, *s.prompt_template, questions, kind, progress_bar_, predictions_path});
  for (const auto& [name, value] : evaluation.metrics) row.values["eval_" + name] = value;
  if (kind == EvaluationKind::final_run) state_->final_eval = evaluation.summary_json;
  return row;
}

std::map<std::string, double> Trainer::evaluate() {
  TrainingSession& s = state_->ready("evaluate()");
  const RunExamples& e = s.examples;
  static const std::vector<data::Example> none;
  const auto& questions = config_.eval.options.max_new_tokens <= 0 ? none : e.test.empty() ? e.validation : e.test;
  return evaluation_row(EvaluationKind::on_request, questions).values;
}

void Trainer::write_summary(const TrainResult& result) {
  const TrainingSession& s = *state_->session;
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
  j["precision"] = precision_json(state_->precision);
  j["train_examples"] = s.data.train_report.total;
  j["train_examples_truncated"] = s.data.train_report.truncated;
  j["train_examples_skipped"] = s.data.train_report.skipped;
  j["validation_examples"] = static_cast<int64_t>(s.examples.validation_count());
  if (!state_->final_eval.empty()) j["eval"] = nlohmann::ordered_json::parse(state_->final_eval);
  io::write_file_atomic((fs::path(config_.train.output_dir) / "summary.json").string(), j.dump(2) + "\n");
}

}  // namespace ranktune::train
