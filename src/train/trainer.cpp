#include "ranktune/train/trainer.h"

#include "ranktune/core/dtype.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/progress.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/json.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/train/distributed.h"
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
  if (!inputs_.communicator) {
    const std::string device_type = config_.model.device.rfind("cuda", 0) == 0 ? "cuda" : "cpu";  // NCCL for CUDA
    inputs_.communicator = join_from_environment(config_.train.distributed_timeout, device_type);
  }
  if (inputs_.communicator && inputs_.communicator->rank() > 0 && log_level() == LogLevel::info) {
    set_log_level(LogLevel::warning);  // rank 0 tells the story once
  }
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
        communicator_(trainer.inputs_.communicator.get()),
        writes_(!communicator_ || communicator_->rank() == 0),
        metrics_(open_run(config_, s_, writes_)),
        seconds_before_(s_.progress.seconds),
        bar_(s_.progress.total_steps, "train", trainer.progress_bar_ && writes_ ? stderr : nullptr) {
    trainer_.state_->precision = decide_precision(t_.precision);
    if (t_.precision != Precision::fp32 && writes_) log_info(trainer_.state_->precision.describe());
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
  // Rank 0's metrics log; the other workers keep their rows in memory only.
  static std::optional<MetricsLog> open_run(const RunConfig& config, const TrainingSession& s, bool writes) {
    if (!writes) return std::nullopt;
    open_run_directory(config, s);
    return MetricsLog((fs::path(config.train.output_dir) / "metrics.jsonl").string(),
                      s.resume_dir.empty() ? -1 : s.progress.step);
  }

  bool last_step() const { return s_.progress.step == s_.progress.total_steps; }
  bool every(int64_t interval) const { return interval > 0 && s_.progress.step % interval == 0; }
  double seconds() const { return seconds_before_ + std::chrono::duration<double>(Clock::now() - start_).count(); }

  void emit(const MetricsRow& row) {
    if (metrics_) metrics_->write(row);
    else rows_.push_back(row);
    for (auto& callback : trainer_.state_->callbacks) callback(row);
  }
  const std::vector<MetricsRow>& rows() const { return metrics_ ? metrics_->rows() : rows_; }

  // The micro-batches of the next optimizer step, in the plan's order from the data position. A
  // data-parallel worker takes its rank's share of each global batch (an empty share: an empty Batch).
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
      const auto& batch = epoch_batches_[static_cast<size_t>(position % plan.batches_per_epoch())];
      const auto [first, last] = my_share(static_cast<int64_t>(batch.size()));
      for (int64_t i = first; i < last; ++i) members.push_back(&s_.data.train[static_cast<size_t>(batch[static_cast<size_t>(i)])]);
      out.push_back(members.empty() ? data::Batch{} : data::collate(members, s_.data.pad_token_id));
      interval_.tokens += out.back().tokens;
    }
    return out;
  }

  // This worker's part [first, last) of a global batch of `size`: train.batch_size examples at
  // rank × train.batch_size (the last global batch may leave a worker fewer or none).
  std::pair<int64_t, int64_t> my_share(int64_t size) const {
    if (!communicator_) return {0, size};
    const int64_t first = std::min(size, communicator_->rank() * t_.batch_size);
    return {first, std::min(size, first + t_.batch_size)};
  }

  StepResult train_step() {
    const MicroBatchLoss loss_of = [this](const data::Batch& batch) {
      const AutocastScope autocast(trainer_.state_->precision.chosen);
      const torch::Device device = s_.device;  // the batches are host memory until here
      return s_.model->forward(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device),
                               nullptr, /*need_logits=*/false).loss;
    };
    const StepResult step = optimizer_step(*s_.optimizer, next_micro_batches(), loss_of, t_, s_.steps.warmup_steps,
                                           s_.progress, communicator_);
    if (step.applied) {
      interval_.loss += step.loss;
      ++interval_.steps;
    }
    interval_.reduce_seconds += step.reduce_seconds;
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
    const double tokens = communicator_ ? all_reduce_sum(*communicator_, {static_cast<double>(interval_.tokens)})[0]
                                        : static_cast<double>(interval_.tokens);
    row.values["tokens_per_second"] = tokens / std::max(elapsed, 1e-9);
    if (communicator_) row.values["allreduce_seconds"] = interval_.reduce_seconds / static_cast<double>(interval_.steps);
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
  // Data-parallel workers stop together: at the first step boundary where any was asked to.
  std::string maybe_save() {
    bool stopping = signals_->received() != 0 || trainer_.stop_requested_;
    if (communicator_) stopping = all_reduce_sum(*communicator_, {stopping ? 1.0 : 0.0})[0] > 0;
    if ((every(t_.save_every) || stopping) && writes_) {
      s_.progress.seconds = seconds();
      save_session_checkpoint(s_, t_);
    }
    if (!stopping) return "";
    signal_ = signals_->received() != 0 ? signals_->received() : communicator_ && !trainer_.stop_requested_ ? SIGTERM : 0;
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
      if (writes_) save_trained_weights(s_, t_.output_dir);
      signals_.reset();
      emit(trainer_.evaluation_row(EvaluationKind::final_run, s_.examples.test,
                                   (fs::path(t_.output_dir) / "predictions.jsonl").string()));
      if (writes_) {
        write_training_curve(rows(), (fs::path(t_.output_dir) / "training-curve.svg").string(),
                             c10::str(config_.adapter.training_method(), " on ", config_.model.path, " with ",
                                      config_.template_name));
      }
    }
    result.seconds = seconds();
    // The loss of the first and the last logged training interval of the whole run (every segment).
    std::tie(result.first_loss, result.last_loss) = first_and_last(rows(), "loss");
    if (std::isnan(result.first_loss)) result.first_loss = result.last_loss = 0;
    if (writes_) trainer_.write_summary(result);
    return result;
  }

  struct Interval {
    double loss = 0, reduce_seconds = 0;
    int64_t steps = 0, tokens = 0;
    Clock::time_point start = Clock::now();
  };

  Trainer& trainer_;
  TrainingSession& s_;
  const RunConfig& config_;
  const TrainSection& t_;
  Communicator* communicator_;  // null: one process
  const bool writes_;           // rank 0 (or the one process) writes the run's files
  std::optional<MetricsLog> metrics_;
  std::vector<MetricsRow> rows_;  // the other workers' rows
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
  // Data-parallel workers take every world-th batch and sum their parts.
  Communicator* communicator = inputs_.communicator.get();
  const size_t stride = batch_size * static_cast<size_t>(communicator ? communicator->world_size() : 1);
  for (size_t start = batch_size * static_cast<size_t>(communicator ? communicator->rank() : 0); start < tokens.size();
       start += stride) {
    std::vector<const data::TokenizedExample*> members;
    for (size_t i = start; i < std::min(tokens.size(), start + batch_size); ++i) members.push_back(&tokens[i]);
    const data::Batch batch = data::collate(members, s.data.pad_token_id);
    if (batch.loss_tokens == 0) continue;
    const double loss = s.model->forward(batch.input_ids.to(s.device), batch.attention_mask.to(s.device),
                                         batch.labels.to(s.device), nullptr, /*need_logits=*/false).loss.item<double>();
    weighted += loss * static_cast<double>(batch.loss_tokens);
    counted += batch.loss_tokens;
  }
  s.model->train(was_training);
  if (communicator) {
    const std::vector<double> sums = all_reduce_sum(*communicator, {weighted, static_cast<double>(counted)});
    weighted = sums[0];
    counted = static_cast<int64_t>(sums[1]);
  }
  return counted > 0 ? weighted / static_cast<double>(counted) : NAN;
}

MetricsRow Trainer::evaluation_row(EvaluationKind kind, const std::vector<data::Example>& questions,
                                   const std::string& predictions_path) {
  TrainingSession& s = *state_->session;
  MetricsRow row;
  row.step = s.progress.step;
  row.values["eval_loss"] = validation_loss();
  if (questions.empty() || !inputs_.evaluator) return row;
  const Evaluation evaluation = inputs_.evaluator->evaluate({*s.model, *s.tokenizer, *s.prompt_template, questions, kind,
                                                             progress_bar_, predictions_path, inputs_.communicator.get()});
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
