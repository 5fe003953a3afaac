// GrpoTrainer: the GRPO loop on the shared session (setup_*, run directory, checkpoints, signals).
// One round = rollouts for the prompts of one optimizer step (sampled, scored, advantages, old and
// reference log-probs), then grpo.num_iterations optimizer steps on them. Checkpoints fall on round
// boundaries, so a resumed run samples exactly what the uninterrupted run samples (the sampler is
// seeded from train.seed and the round; the global RNG, for dropout, is in the checkpoint).

#include "ranktune/train/grpo.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/progress.h"
#include "ranktune/core/threads.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/train/grpo_loss.h"
#include "ranktune/train/template_generation.h"
#include "grpo_rollout.h"
#include "precision.h"
#include "session.h"
#include "step.h"
#include "token_logprobs.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>

namespace ranktune::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using torch::Tensor;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

GrpoLossType loss_type_of(const std::string& name) {
  if (name == "grpo") return GrpoLossType::grpo;
  if (name == "bnpo") return GrpoLossType::bnpo;
  if (name == "dr_grpo") return GrpoLossType::dr_grpo;
  return GrpoLossType::dapo;  // the key's choices are checked on loading
}

RewardScaling scaling_of(const std::string& name) {
  if (name == "batch") return RewardScaling::batch;
  if (name == "none") return RewardScaling::none;
  return RewardScaling::group;
}

// The sampler's seed of round `round` (each row then draws from its own stream, row_seed): fixed by
// the recipe, so a resumed run draws the same completions (splitmix64 keeps nearby rounds apart).
uint64_t rollout_seed(uint64_t seed, int64_t round) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(round + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// ---- the trainer's state and setup ---------------------------------------------------------------------

struct GrpoTrainer::State {
  RunConfig config;
  TrainerInputs inputs;
  std::vector<RewardFunction> custom_rewards;
  std::vector<RewardFunction> rewards;  // built-in, then custom
  std::vector<double> reward_weights;
  std::optional<TrainingSession> session;
  std::vector<std::function<void(const MetricsRow&)>> callbacks;
  std::atomic<bool> stop_requested{false};
  bool progress_bar = true;
  int64_t prompts_per_micro_batch = 0;

  TrainingSession& ready(const char* call) {
    RANKTUNE_CHECK(session.has_value(), "call GrpoTrainer::setup() before ", call);
    return *session;
  }
};

GrpoTrainer::GrpoTrainer(RunConfig config, TrainerInputs inputs, std::vector<RewardFunction> rewards)
    : state_(std::make_unique<State>()) {
  state_->config = std::move(config);
  state_->inputs = std::move(inputs);
  state_->custom_rewards = std::move(rewards);
}
GrpoTrainer::~GrpoTrainer() = default;

const RunConfig& GrpoTrainer::config() const { return state_->config; }
std::shared_ptr<model::CausalLMImpl> GrpoTrainer::model() const { return state_->session ? state_->session->model : nullptr; }
std::shared_ptr<peft::PeftModel> GrpoTrainer::peft_model() const {
  return state_->session ? state_->session->weights.peft : nullptr;
}
const tokenizer::Tokenizer& GrpoTrainer::tokenizer() const { return *state_->ready("tokenizer()").tokenizer; }
int64_t GrpoTrainer::total_steps() const { return state_->session ? state_->session->progress.total_steps : 0; }
void GrpoTrainer::add_callback(std::function<void(const MetricsRow&)> callback) { state_->callbacks.push_back(std::move(callback)); }
void GrpoTrainer::request_stop() { state_->stop_requested = true; }
void GrpoTrainer::set_progress_bar(bool enabled) { state_->progress_bar = enabled; }

void GrpoTrainer::setup() {
  State& st = *state_;
  const RunConfig& config = st.config;
  const TrainSection& t = config.train;
  const GrpoSection& g = config.grpo;
  auto fail = [&](const char* key, const std::string& message) { throw Error(message, ErrorContext{config.source, key, -1}); };
  // Rollouts, rewards and their layout are host code for now (tests/device/allow_list.txt).
  if (config.model.device != "cpu") {
    fail("model.device", "is " + config.model.device + ": ranktune grpo runs on the CPU only for now (docs/grpo.md)");
  }
  if (t.batch_size % g.num_generations != 0) {
    fail("train.batch_size", c10::str("is ", t.batch_size, ": completions per micro-batch must be a multiple of "
                                      "grpo.num_generations (", g.num_generations, ") so that groups are not split"));
  }
  if (t.max_steps % g.num_iterations != 0) {
    fail("train.max_steps", c10::str("is ", t.max_steps, ": must be a multiple of grpo.num_iterations (", g.num_iterations,
                                     ") — each batch of rollouts is used for that many steps"));
  }
  RANKTUNE_CHECK_CTX(!config.data.sft_format(), (ErrorContext{config.source, "data.format", -1}),
                     "GRPO needs questions with gold answers: data.format gsm8k or jsonl, not ", to_string(config.data.format));
  st.prompts_per_micro_batch = t.batch_size / g.num_generations;
  configure_threads(static_cast<int>(t.threads));

  TrainingSession s;
  s.examples = setup_examples(config, st.inputs);
  const std::optional<peft::LoraConfig> adapter = setup_adapter_config(config, st.inputs);
  setup_model_files(config, st.inputs);
  s.tokenizer = setup_tokenizer(config, st.inputs);
  s.prompt_template = setup_template(config, *s.tokenizer);

  // The rewards, before any model loads: an unknown name or a weight count that does not match fails fast.
  st.rewards.clear();
  for (const auto& name : g.reward_funcs) st.rewards.push_back(builtin_reward(name, s.prompt_template));
  for (const auto& custom : st.custom_rewards) {
    RANKTUNE_CHECK(custom.score != nullptr, "custom reward function '", custom.name, "' has no scoring function");
    st.rewards.push_back(custom);
  }
  if (st.rewards.empty()) fail("grpo.reward_funcs", "is empty and no custom reward function is given: nothing to learn from");
  for (size_t i = 0; i < st.rewards.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (st.rewards[i].name == st.rewards[j].name) fail("grpo.reward_funcs", "names reward '" + st.rewards[i].name + "' twice");
    }
  }
  st.reward_weights = g.reward_weights.empty() ? std::vector<double>(st.rewards.size(), 1.0) : g.reward_weights;
  if (st.reward_weights.size() != st.rewards.size()) {
    fail("grpo.reward_weights", c10::str("has ", st.reward_weights.size(), " weights for ", st.rewards.size(),
                                         " reward functions (built-in, then custom)"));
  }

  s.progress.recipe = fixed_recipe_values(config, st.inputs);
  s.resume_dir = setup_run_directory(t, s.progress.recipe);

  s.model = setup_model(config, st.inputs);
  s.weights = setup_adapter(config, st.inputs, s.model, adapter);
  if (g.beta > 0) {
    RANKTUNE_CHECK_CTX(s.weights.peft != nullptr, (ErrorContext{config.source, "grpo.beta", -1}),
                       "is ", g.beta, ": the reference policy is the model with its adapter disabled, so beta > 0 "
                       "needs an adapter (adapter.method lora or dora)");
  }
  // Steps: one round per prompts_per_step prompts, num_iterations steps per round.
  const auto prompts = static_cast<int64_t>(s.examples.train.size());
  const int64_t prompts_per_round = st.prompts_per_micro_batch * t.gradient_accumulation_steps;
  const int64_t rounds_per_epoch = std::max<int64_t>(1, prompts / prompts_per_round);
  s.steps.total_steps = t.max_steps > 0 ? t.max_steps : t.epochs * rounds_per_epoch * g.num_iterations;
  s.steps.warmup_steps = t.warmup_steps > 0 ? t.warmup_steps
                                            : static_cast<int64_t>(std::ceil(t.warmup_ratio * static_cast<double>(s.steps.total_steps)));
  s.progress.total_steps = s.steps.total_steps;
  s.progress.seed = t.seed;
  s.optimizer = std::make_unique<TrainingOptimizer>(*s.model, t);
  if (!s.resume_dir.empty()) {
    resume_session(s, t);
    RANKTUNE_CHECK_CTX(s.progress.step % g.num_iterations == 0, (ErrorContext{s.resume_dir, "train.resume_from", -1}),
                       "is at step ", s.progress.step, ", inside a batch of rollouts (grpo.num_iterations=",
                       g.num_iterations, "); GRPO checkpoints are written between batches");
  }
  st.session = std::move(s);
}

// ---- the loop ------------------------------------------------------------------------------------------

class GrpoTrainer::Loop {
 public:
  explicit Loop(GrpoTrainer& trainer)
      : st_(*trainer.state_),
        s_(st_.ready("train()")),
        config_(st_.config),
        t_(config_.train),
        g_(config_.grpo),
        metrics_(open_run(config_, s_)),
        seconds_before_(s_.progress.seconds),
        bar_(s_.progress.total_steps, "grpo", st_.progress_bar ? stderr : nullptr),
        precision_(decide_precision(t_.precision)) {
    if (t_.precision != Precision::fp32) log_info(precision_.describe());
  }

  GrpoResult run() {
    signals_.emplace();
    st_.stop_requested = false;
    std::string status;
    while (status.empty() && s_.progress.step < s_.progress.total_steps) {
      const int64_t round_start = s_.progress.step;
      std::vector<Rollout> rollouts = rollout_round();
      for (int64_t it = 0; it < g_.num_iterations && s_.progress.step < s_.progress.total_steps; ++it) {
        const StepResult step = optimize(rollouts);
        if (s_.progress.nan_streak >= t_.max_nan_steps) {
          status = c10::str("stopped: ", s_.progress.nan_streak, " non-finite steps in a row");
          break;
        }
        maybe_log(step);
        maybe_evaluate();
      }
      if (status.empty()) status = maybe_save(round_start);
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

  double seconds() const { return seconds_before_ + seconds_since(start_); }
  bool every(int64_t interval) const { return interval > 0 && s_.progress.step % interval == 0; }

  void emit(const MetricsRow& row) {
    metrics_.write(row);
    for (auto& callback : st_.callbacks) callback(row);
  }

  // The examples of the next `count` prompts from the data position (progress.micro_step counts
  // prompts), each epoch in its own seeded order.
  std::vector<const data::Example*> next_prompts(int64_t count) {
    const auto& train = s_.examples.train;
    const auto n = static_cast<int64_t>(train.size());
    std::vector<const data::Example*> out;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t position = s_.progress.micro_step++;
      const int64_t epoch = position / n;
      if (epoch != order_epoch_) {
        order_.resize(static_cast<size_t>(n));
        std::iota(order_.begin(), order_.end(), 0);
        std::mt19937_64 rng(t_.seed * 6364136223846793005ull + static_cast<uint64_t>(epoch));
        std::shuffle(order_.begin(), order_.end(), rng);
        order_epoch_ = epoch;
      }
      out.push_back(&train[static_cast<size_t>(order_[static_cast<size_t>(position % n)])]);
    }
    return out;
  }

  // The template's generation options (end of turn, stop strings, its tools: syntax, the GSM8K
  // calculator with grpo.calculator), sampled as grpo.* says.
  model::GenerationOptions generation_options() const {
    model::GenerationOptions options = template_generation_options(*s_.tokenizer, *s_.prompt_template,
                                                                   g_.max_completion_length, g_.calculator, nullptr);
    options.temperature(g_.temperature).top_p(g_.top_p).top_k(g_.top_k).repetition_penalty(g_.repetition_penalty);
    return options;
  }

  // Rollouts for the prompts of one round: sampled, scored, advantages, then the old policy's
  // (num_iterations > 1) and the reference's (beta > 0) log-probs.
  std::vector<Rollout> rollout_round() {
    const auto rollout_start = Clock::now();
    const int64_t round = s_.progress.step / g_.num_iterations;
    const int64_t G = g_.num_generations;
    const tokenizer::Tokenizer& tok = *s_.tokenizer;
    const prompt::PromptTemplate& tpl = *s_.prompt_template;
    model::GenerationOptions options = generation_options();
    RewardBatch batch;
    batch.max_completion_length = g_.max_completion_length;
    std::vector<std::vector<int64_t>> prompt_ids;
    for (const data::Example* e : next_prompts(st_.prompts_per_micro_batch * t_.gradient_accumulation_steps)) {
      const std::string text = tpl.render_prompt(e->question);
      prompt_ids.push_back(tok.encode(text, !tpl.text_has_bos()));
      for (int64_t k = 0; k < G; ++k) {
        batch.prompts.push_back(text);
        batch.examples.push_back(e);
      }
    }
    options.seed(rollout_seed(t_.seed, round));
    std::vector<Rollout> rollouts = sample_rollouts(*s_.model, prompt_ids, G, st_.prompts_per_micro_batch, options);
    for (const Rollout& r : rollouts) {
      for (const auto& ids : r.completions) {
        batch.completions.push_back(prompt::cut_at_stop(tok.decode(ids, /*skip_special_tokens=*/true), tpl.stop()));
        batch.completion_lengths.push_back(static_cast<int64_t>(ids.size()));
      }
    }
    const double sampling_seconds = seconds_since(rollout_start);
    score(rollouts, batch);
    reference_log_probs(rollouts);
    round_.rollout_seconds = seconds_since(rollout_start);
    round_.rollout_tokens_per_second =
        static_cast<double>(std::accumulate(batch.completion_lengths.begin(), batch.completion_lengths.end(), int64_t{0})) /
        std::max(sampling_seconds, 1e-9);
    return rollouts;
  }

  // Rewards [N, F] → the weighted total [N] → advantages per group; the round's reward metrics.
  void score(std::vector<Rollout>& rollouts, const RewardBatch& batch) {
    const auto n = static_cast<int64_t>(batch.completions.size());
    const auto f = static_cast<int64_t>(st_.rewards.size());
    Tensor per_func = at::empty({n, f}, at::kDouble);
    auto acc = per_func.accessor<double, 2>();
    round_.values.clear();
    for (int64_t j = 0; j < f; ++j) {
      const RewardFunction& fn = st_.rewards[static_cast<size_t>(j)];
      const RewardScores scores = fn.score(batch);
      RANKTUNE_CHECK(static_cast<int64_t>(scores.size()) == n, "reward function '", fn.name, "' returned ", scores.size(),
                     " scores for ", n, " completions");
      for (int64_t i = 0; i < n; ++i) acc[i][j] = scores[static_cast<size_t>(i)].value_or(NAN);
      const Tensor column = per_func.select(1, j);
      round_.values["rewards/" + fn.name + "/mean"] = at::nanmean(column).item<double>();
    }
    const Tensor rewards = combine_rewards(per_func, st_.reward_weights);
    const GroupAdvantages adv = group_advantages(rewards, g_.num_generations, scaling_of(g_.scale_rewards));
    const Tensor grouped = rewards.view({-1, g_.num_generations});
    round_.values["reward"] = at::nanmean(rewards).item<double>();
    // TRL's reward_std: the mean of the groups' standard deviations.
    round_.values["reward_std"] = at::nanmean(std_of_groups(grouped)).item<double>();
    // A group without signal: every advantage 0 (every completion scored the group's mean).
    const Tensor no_signal =
        adv.advantages.view({-1, g_.num_generations}).abs().amax(1).eq(0).repeat_interleave(g_.num_generations);
    round_.values["frac_reward_zero_std"] = adv.frac_zero_std_groups;
    Tensor lengths = at::tensor(batch.completion_lengths, at::kDouble);
    round_.values["completions/mean_length"] = lengths.mean().item<double>();
    round_.values["completions/min_length"] = lengths.min().item<double>();
    round_.values["completions/max_length"] = lengths.max().item<double>();

    // Each micro-batch's rows: its advantages, and the rows that carry no loss zeroed in its mask.
    int64_t offset = 0, truncated = 0;
    round_.loss_tokens = 0;
    for (Rollout& r : rollouts) {
      const int64_t rows = r.input_ids.size(0);
      r.advantages = adv.advantages.narrow(0, offset, rows).to(at::kFloat);
      for (int64_t i = 0; i < rows; ++i) {
        const bool masked_truncated = g_.mask_truncated_completions && r.truncated[static_cast<size_t>(i)];
        const bool skipped = g_.skip_zero_std_groups && no_signal[offset + i].item<bool>();
        truncated += r.truncated[static_cast<size_t>(i)];
        if (masked_truncated || skipped) r.completion_mask[i].zero_();
      }
      round_.loss_tokens += static_cast<int64_t>(r.completion_mask.sum().item<double>());
      offset += rows;
    }
    round_.values["completions/clipped_ratio"] = static_cast<double>(truncated) / static_cast<double>(n);
  }

  static Tensor std_of_groups(const Tensor& grouped) {
    const Tensor valid = grouped.isnan().logical_not();
    const Tensor count = valid.sum(1).to(at::kDouble);
    const Tensor mean = grouped.nan_to_num(0.0).sum(1) / count;
    const Tensor dev = (grouped - mean.unsqueeze(1)).nan_to_num(0.0);
    return ((dev * dev).sum(1) / (count - 1)).sqrt();
  }

  // Without gradients and dropout: the old policy's log-probs when each batch of rollouts serves
  // more than one step, and the reference's (adapter disabled) when beta > 0.
  void reference_log_probs(std::vector<Rollout>& rollouts) {
    if (g_.num_iterations == 1 && g_.beta == 0) return;
    at::NoGradGuard no_grad;
    const bool was_training = s_.model->is_training();
    s_.model->eval();
    const AutocastScope autocast(precision_.chosen);
    for (Rollout& r : rollouts) {
      if (r.completion_mask.sum().item<double>() == 0) continue;
      if (g_.num_iterations > 1) r.old_logps = log_probs(r).logps;
      if (g_.beta > 0) {
        peft::DisabledAdapters disabled(*s_.weights.peft);
        r.ref_logps = log_probs(r).logps;
      }
    }
    s_.model->train(was_training);
  }

  TokenLogProbs log_probs(const Rollout& r) {
    return completion_log_probs(*s_.model, r.input_ids, r.attention_mask, r.completion_length, g_.temperature,
                                g_.logprob_chunk);
  }

  // One optimizer step over the round's micro-batches: the GRPO loss of each (dapo normalised by
  // every loss token of the step, the other types averaged over the micro-batches, as TRL), backward,
  // then the shared clip-and-apply.
  StepResult optimize(const std::vector<Rollout>& rollouts) {
    const auto train_start = Clock::now();
    s_.model->train();
    GrpoLossOptions options;
    options.loss_type = loss_type_of(g_.loss_type);
    options.epsilon = g_.epsilon;
    options.epsilon_high = g_.epsilon_high;
    options.beta = g_.beta;
    options.max_completion_length = g_.max_completion_length;
    options.num_items_in_batch = static_cast<double>(round_.loss_tokens);
    const double micro_batches = static_cast<double>(rollouts.size());
    double loss = 0, entropy_sum = 0, tokens = 0, low = 0, high = 0, region = 0, kl = 0;
    int64_t processed = 0;
    for (const Rollout& r : rollouts) {
      const double mask_tokens = r.completion_mask.sum().item<double>();
      if (mask_tokens == 0) continue;  // every row masked (truncated, or a skipped zero-spread group)
      GrpoLossResult result;
      TokenLogProbs lp;
      {
        const AutocastScope autocast(precision_.chosen);
        lp = log_probs(r);
      }
      // The old policy's log-probs exist when num_iterations > 1; otherwise the loss takes the
      // detached current ones (on-policy: ratio 1).
      result = grpo_loss(lp.logps, r.old_logps, r.ref_logps, r.advantages, r.completion_mask, options);
      Tensor micro_loss = options.loss_type == GrpoLossType::dapo ? result.loss : result.loss / micro_batches;
      const double value = micro_loss.item<double>();
      if (!std::isfinite(value)) {
        loss = value;
        break;
      }
      micro_loss.backward();
      loss += value;
      entropy_sum += (lp.entropy * r.completion_mask).sum().item<double>();
      tokens += mask_tokens;
      low += result.clip_ratio_low * mask_tokens;
      high += result.clip_ratio_high * mask_tokens;
      region += result.clip_ratio_region * mask_tokens;
      kl += result.mean_kl * mask_tokens;
      processed += r.input_ids.numel();
    }
    const StepResult step = apply_gradients(*s_.optimizer, loss, t_, s_.steps.warmup_steps, s_.progress);
    interval_.steps += 1;
    interval_.loss += step.loss;
    interval_.grad_norm = step.grad_norm;
    interval_.train_seconds += seconds_since(train_start);
    interval_.train_tokens += processed;
    if (tokens > 0) {
      interval_.entropy += entropy_sum / tokens;
      interval_.clip_low += low / tokens;
      interval_.clip_high += high / tokens;
      interval_.clip_region += region / tokens;
      interval_.kl += kl / tokens;
      interval_.token_steps += 1;
    }
    return step;
  }

  void maybe_log(const StepResult& step) {
    const bool last = s_.progress.step == s_.progress.total_steps;
    if (interval_.steps == 0 || !(every(t_.log_every) || last)) return;
    (void)step;
    MetricsRow row;
    row.step = s_.progress.step;
    row.values = round_.values;
    const double n = static_cast<double>(interval_.steps), m = std::max<double>(1, interval_.token_steps);
    row.values["loss"] = interval_.loss / n;
    row.values["lr"] = s_.optimizer->lr();
    row.values["grad_norm"] = interval_.grad_norm;
    row.values["entropy"] = interval_.entropy / m;
    row.values["clip_ratio/low_mean"] = interval_.clip_low / m;
    row.values["clip_ratio/high_mean"] = interval_.clip_high / m;
    row.values["clip_ratio/region_mean"] = interval_.clip_region / m;
    if (g_.beta > 0) row.values["kl"] = interval_.kl / m;
    row.values["rollout_seconds"] = round_.rollout_seconds;
    row.values["rollout_tokens_per_second"] = round_.rollout_tokens_per_second;
    row.values["train_seconds"] = interval_.train_seconds;
    row.values["train_tokens_per_second"] = static_cast<double>(interval_.train_tokens) / std::max(interval_.train_seconds, 1e-9);
    row.values["epoch"] = static_cast<double>(s_.progress.micro_step) / static_cast<double>(s_.examples.train.size());
    emit(row);
    bar_.update(s_.progress.step, {{"reward", c10::str(std::round(row.values["reward"] * 1000) / 1000)},
                                   {"len", std::to_string(static_cast<int64_t>(row.values["completions/mean_length"]))},
                                   {"loss", c10::str(std::round(row.values["loss"] * 10000) / 10000)}});
    interval_ = Interval{};
  }

  MetricsRow evaluation_row(EvaluationKind kind, const std::vector<data::Example>& questions,
                            const std::string& predictions_path = "") {
    MetricsRow row;
    row.step = s_.progress.step;
    if (questions.empty() || !st_.inputs.evaluator) return row;
    const Evaluation evaluation = st_.inputs.evaluator->evaluate(
        {*s_.model, *s_.tokenizer, *s_.prompt_template, questions, kind, st_.progress_bar, predictions_path});
    for (const auto& [name, value] : evaluation.metrics) row.values["eval_" + name] = value;
    if (kind == EvaluationKind::final_run) final_eval_ = evaluation.summary_json;
    return row;
  }

  void maybe_evaluate() {
    if (!every(t_.eval_every) || s_.progress.step == s_.progress.total_steps) return;
    const auto& validation = s_.examples.validation;
    const int64_t n = std::min<int64_t>(config_.eval.during_training, static_cast<int64_t>(validation.size()));
    if (n == 0) return;
    const std::vector<data::Example> questions(validation.begin(), validation.begin() + n);
    emit(evaluation_row(EvaluationKind::during_training, questions));
  }

  // A checkpoint when this round crossed a multiple of train.save_every, or a stop is asked for;
  // returns "interrupted" then.
  std::string maybe_save(int64_t round_start) {
    const bool stopping = signals_->received() != 0 || st_.stop_requested;
    const bool due = t_.save_every > 0 && s_.progress.step / t_.save_every > round_start / t_.save_every;
    if (due || stopping) {
      s_.progress.seconds = seconds();
      save_session_checkpoint(s_, t_);
    }
    if (!stopping) return "";
    signal_ = signals_->received();
    return "interrupted";
  }

  GrpoResult finish(const std::string& status) {
    GrpoResult result;
    result.status = status;
    result.signal = signal_;
    result.steps = s_.progress.step;
    result.output_dir = t_.output_dir;
    if (status == "completed") {
      save_trained_weights(s_, t_.output_dir);
      signals_.reset();
      const MetricsRow evaluation = evaluation_row(EvaluationKind::final_run, s_.examples.test,
                                                   (fs::path(t_.output_dir) / "predictions.jsonl").string());
      if (!evaluation.values.empty()) emit(evaluation);
      write_metric_curves(metrics_.rows(), (fs::path(t_.output_dir) / "training-curve.svg").string(),
                          c10::str("GRPO (", config_.adapter.training_method(), ") on ", config_.model.path, " with ",
                                   config_.template_name),
                          {{"mean reward", {"reward"}, false},
                           {"completion length (tokens)", {"completions/mean_length"}, false},
                           {"loss", {"loss"}, false}});
    }
    result.seconds = seconds();
    std::tie(result.first_reward, result.last_reward) = first_and_last(metrics_.rows(), "reward");
    std::tie(result.first_loss, result.last_loss) = first_and_last(metrics_.rows(), "loss");
    write_summary(result);
    return result;
  }

  void write_summary(const GrpoResult& result) {
    nlohmann::ordered_json j;
    j["status"] = result.status;
    j["steps"] = result.steps;
    j["total_steps"] = s_.progress.total_steps;
    j["first_reward"] = result.first_reward;
    j["last_reward"] = result.last_reward;
    j["seconds"] = result.seconds;
    j["method"] = config_.adapter.training_method();
    j["model"] = config_.model.path;
    j["template"] = config_.template_name;
    j["init_from"] = config_.adapter.init_from;
    j["trainable_parameters"] = s_.optimizer->parameter_count();
    j["prompts"] = static_cast<int64_t>(s_.examples.train.size());
    j["num_generations"] = g_.num_generations;
    j["loss_type"] = g_.loss_type;
    std::vector<std::string> names;
    for (const auto& r : st_.rewards) names.push_back(r.name);
    j["reward_funcs"] = names;
    j["reward_weights"] = st_.reward_weights;
    if (!final_eval_.empty()) j["eval"] = nlohmann::ordered_json::parse(final_eval_);
    io::write_file_atomic((fs::path(t_.output_dir) / "summary.json").string(), j.dump(2) + "\n");
  }

  struct RoundMetrics {
    std::map<std::string, double> values;  // reward, rewards/<name>/mean, lengths, frac_reward_zero_std, ...
    int64_t loss_tokens = 0;
    double rollout_seconds = 0, rollout_tokens_per_second = 0;
  };
  struct Interval {
    int64_t steps = 0, token_steps = 0, train_tokens = 0;
    double loss = 0, grad_norm = NAN, entropy = 0, clip_low = 0, clip_high = 0, clip_region = 0, kl = 0,
           train_seconds = 0;
  };

  State& st_;
  TrainingSession& s_;
  const RunConfig& config_;
  const TrainSection& t_;
  const GrpoSection& g_;
  MetricsLog metrics_;
  const Clock::time_point start_ = Clock::now();
  const double seconds_before_;
  ProgressBar bar_;
  const PrecisionDecision precision_;  // train.precision, `auto` resolved by its probe
  std::optional<StopSignals> signals_;
  int signal_ = 0;
  RoundMetrics round_;
  Interval interval_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
  std::string final_eval_;
};

GrpoResult GrpoTrainer::train() { return Loop(*this).run(); }

}  // namespace ranktune::train
