#pragma once
// The trainer: a model, an adapter (LoRA, DoRA) or full fine-tuning, a chain-of-thought template
// and a dataset, trained as a RunConfig says — with checkpoints that resume exactly, metrics,
// a training curve and a final evaluation by the Evaluator its caller injects (train/evaluator.h).
// Shaped as torchtune's recipes: setup() builds the run once (src/train/session.h: one setup
// function per component), train() runs a loop of small named steps (train_step, maybe_log,
// maybe_evaluate, maybe_save, finish).
//
//   auto config = ranktune::train::RunConfig::load("examples/gsm8k/lora.yaml");
//   ranktune::train::TrainerInputs inputs;
//   inputs.evaluator = ranktune::eval::make_gsm8k_evaluator(config.eval.options);  // eval/gsm8k_eval.h
//   ranktune::train::Trainer trainer(config, std::move(inputs));
//   trainer.setup();
//   auto result = trainer.train();
//
// Under data parallelism (docs/distributed.md) each worker runs the same calls; train.batch_size is
// per worker, rank 0 writes every file and shows the progress bar.
//
// Files in train.output_dir: adapter_config.json + adapter_model.safetensors (or model.safetensors
// for full fine-tuning), checkpoint-<step>/ (the last train.keep_last), metrics.jsonl,
// training-curve.svg, predictions.jsonl (final evaluation), summary.json, config.yaml.

#include "ranktune/data/examples.h"
#include "ranktune/train/config.h"
#include "ranktune/train/evaluator.h"
#include "ranktune/train/metrics.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::model {
class CausalLMImpl;
}
namespace ranktune::peft {
class PeftModel;
}
namespace ranktune::tokenizer {
class Tokenizer;
}

namespace ranktune::train {

class Communicator;  // train/distributed.h

struct TrainResult {
  std::string status;       // "completed", "interrupted" (a checkpoint was saved), "stopped: ..."
  int64_t steps = 0;        // optimizer steps done in total (including before a resume)
  // Mean loss of the first and the last logged interval of the whole run (across resumes).
  double first_loss = 0;
  double last_loss = 0;
  double seconds = 0;       // training time of the whole run (across resumes)
  int signal = 0;           // SIGINT, SIGTERM or SIGHUP when one interrupted the run; else 0
  std::string output_dir;
};

// The run's model: loaded from model.path, or — when the directory has a config.json but no
// weights (the quickstart's tiny model) — initialised randomly from model.init_seed.
std::shared_ptr<model::CausalLMImpl> load_run_model(const ModelSection& section);

// The questions a run is evaluated on: eval.file when set (first eval.limit), else the validation
// examples held out of the training data (the same split the trainer makes, decided in one place).
std::vector<data::Example> evaluation_questions(const RunConfig& config);

// Pieces a caller already has (the Python Trainer passes its model, tokenizer and datasets); what
// is missing is built from the RunConfig.
struct TrainerInputs {
  std::shared_ptr<model::CausalLMImpl> model;
  // The model with an adapter already attached: trained as it is (adapter.* is not used).
  std::shared_ptr<peft::PeftModel> peft_model;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  std::optional<std::vector<data::Example>> train_examples;
  // Validation examples (loss, and the final evaluation when eval.file is empty). Without them,
  // data.validation_size examples are held out of the training examples (seeded by train.seed).
  std::optional<std::vector<data::Example>> eval_examples;
  // Scores the model during training, on request and at the end (null: the validation loss only).
  std::shared_ptr<Evaluator> evaluator;
  // The group of data-parallel workers this trainer is one of (train/distributed.h). Null: setup()
  // joins the group torchrun's variables describe (WORLD_SIZE > 1), else the run is one process.
  std::shared_ptr<Communicator> communicator;
};

class Trainer {
 public:
  explicit Trainer(RunConfig config, TrainerInputs inputs = {});
  ~Trainer();

  // Loads the tokenizer, the model (random weights from model.init_seed when the directory has
  // none), the template and the data; attaches the adapter; builds the optimizer; and, with
  // train.resume_from, restores a checkpoint. Throws ranktune::Error before writing anything to
  // output_dir when an input is missing or invalid.
  void setup();
  // Runs to train.max_steps (or the epochs), then saves the adapter, evaluates and writes the
  // summary. SIGINT (Ctrl-C), SIGTERM, SIGHUP or request_stop() end it after the current step with
  // a checkpoint. A checkpoint that cannot be written (disk full, permission) is reported and
  // skipped, keeping the previous one. A run file that cannot be written (metrics.jsonl, the final
  // adapter, training-curve.svg, summary.json) ends the run with an Error naming the file and the
  // cause; the last checkpoint stays and no temporary is left.
  TrainResult train();

  // Called with every metrics row (training and evaluation), e.g. to show progress elsewhere.
  void add_callback(std::function<void(const MetricsRow&)> callback);
  // Asks the loop to stop after the current step, save a checkpoint and return "interrupted".
  void request_stop() { stop_requested_ = true; }
  // Validation loss and the evaluator's metrics on the evaluation questions (quick: greedy, no extra
  // samples), as metric name -> value ("eval_loss", "eval_accuracy_strict", ...).
  std::map<std::string, double> evaluate();
  // The progress bar on stderr (on by default; the Python Trainer shows its own).
  void set_progress_bar(bool enabled) { progress_bar_ = enabled; }

  const RunConfig& config() const { return config_; }
  std::shared_ptr<model::CausalLMImpl> model() const;
  const tokenizer::Tokenizer& tokenizer() const;
  // The adapter being trained (attached by setup() unless given); null for full fine-tuning.
  std::shared_ptr<peft::PeftModel> peft_model() const;
  // Optimizer steps the run goes to (train.max_steps, else the epochs); 0 before setup().
  int64_t total_steps() const;

 private:
  struct State;
  class Loop;
  // A metrics row at the current step: the validation loss and the evaluator's metrics.
  MetricsRow evaluation_row(EvaluationKind kind, const std::vector<data::Example>& questions,
                            const std::string& predictions_path = "");
  double validation_loss();
  void write_summary(const TrainResult& result);

  RunConfig config_;
  TrainerInputs inputs_;
  std::unique_ptr<State> state_;
  bool progress_bar_ = true;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace ranktune::train
