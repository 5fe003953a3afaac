// Fine-tune on GSM8K with the C++ API, step by step: the pipeline `ranktune train` runs, written
// out so each piece can be swapped (another template, another loss, another optimizer).
//
//   ./build/examples/finetune_gsm8k                                   # the quickstart model and data
//   ./build/examples/finetune_gsm8k MODEL_DIR TRAIN.jsonl TEST.jsonl OUT_DIR STEPS
//   ./build/examples/finetune_gsm8k --help
//
// From the repository root. The quickstart model has no trained weights (it is initialised from a
// seed), so this shows the mechanics; point it at a real model for accuracy.

#include <ranktune/core/error.h>
#include <ranktune/core/threads.h>
#include <ranktune/data/batching.h>
#include <ranktune/data/examples.h>
#include <ranktune/eval/gsm8k_eval.h>
#include <ranktune/model/causal_lm.h>
#include <ranktune/peft/peft_model.h>
#include <ranktune/prompt/template.h>
#include <ranktune/tokenizer/tokenizer.h>
#include <ranktune/train/schedule.h>
#include <ranktune/train/trainer.h>

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <cstdio>
#include <exception>
#include <string>

using namespace ranktune;

namespace {

const char* const kUsage =
    "usage: finetune_gsm8k [MODEL_DIR [TRAIN.jsonl [TEST.jsonl [OUT_DIR [STEPS]]]]]\n"
    "  defaults: examples/gsm8k/quickstart/model, its data/train.jsonl and data/test.jsonl,\n"
    "            runs/finetune_gsm8k_cpp, 60 steps (run from the repository root)\n";

// STEPS as a positive integer, or an error naming the argument.
int64_t parse_steps(const std::string& text) {
  size_t used = 0;
  int64_t steps = 0;
  try {
    steps = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || steps <= 0) throw Error("STEPS must be a positive integer, got '" + text + "'");
  return steps;
}

int run(int argc, char** argv) {
  const std::string model_dir = argc > 1 ? argv[1] : "examples/gsm8k/quickstart/model";
  const std::string train_file = argc > 2 ? argv[2] : "examples/gsm8k/quickstart/data/train.jsonl";
  const std::string test_file = argc > 3 ? argv[3] : "examples/gsm8k/quickstart/data/test.jsonl";
  const std::string out_dir = argc > 4 ? argv[4] : "runs/finetune_gsm8k_cpp";
  const int64_t steps = argc > 5 ? parse_steps(argv[5]) : 60;
  configure_threads();

  // 1. Model (random weights from a seed when the directory has none), tokenizer, template.
  train::ModelSection model_section;
  model_section.path = model_dir;
  model_section.dtype = "float32";
  auto model = train::load_run_model(model_section);
  const auto tokenizer = tokenizer::Tokenizer::from_pretrained(model_dir);
  const auto prompt_template = prompt::PromptTemplate::load("gsm8k-cot");

  // 2. LoRA on every linear layer but the output head; everything else frozen.
  torch::manual_seed(42);
  peft::PeftModel peft_model(model, peft::LoraConfig().r(32).lora_alpha(64).target_modules("all-linear"), "default");
  std::printf("%s\n", peft_model.trainable_parameters().summary().c_str());

  // 3. Data: question -> prompt, worked solution -> target; loss only on the target.
  std::vector<data::TextPair> pairs;
  for (const auto& e : data::load_gsm8k(train_file)) {
    pairs.push_back({prompt_template.render_prompt(e.question), prompt_template.render_response(e.rationale, e.answer)});
  }
  data::TokenizeOptions tokenize;
  tokenize.max_length = 256;
  data::TokenizeReport report;
  const auto examples = data::tokenize_pairs(pairs, tokenizer, tokenize, &report);
  std::printf("data: %s\n", report.describe().c_str());
  std::vector<int64_t> lengths;
  for (const auto& e : examples) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
  const data::BatchPlan plan(lengths, /*batch_size=*/8, /*seed=*/42);

  // 4. AdamW over the adapter, cosine schedule with warmup, gradient clipping.
  std::vector<torch::Tensor> params;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  const double lr = 3e-3;
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(lr).weight_decay(0.0));
  model->train();
  const auto batches = plan.epoch_batches(0);
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<const data::TokenizedExample*> members;
    for (int64_t i : batches[static_cast<size_t>(step) % batches.size()]) members.push_back(&examples[static_cast<size_t>(i)]);
    const data::Batch batch = data::collate(members, tokenizer.pad_token_id().value_or(0));
    torch::Tensor loss = model->forward(batch.input_ids, batch.attention_mask, batch.labels).loss;
    optimizer.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    const double multiplier = train::lr_multiplier(train::Schedule::cosine, step, /*warmup=*/5, steps);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr * multiplier);
    optimizer.step();
    if (step % 10 == 0 || step + 1 == steps) std::printf("step %3lld  loss %.4f\n", static_cast<long long>(step + 1), loss.item<double>());
  }

  // 5. Save the adapter in PEFT's format and evaluate with the template's answer format.
  peft_model.save_pretrained(out_dir);
  eval::EvalOptions eval_options;
  eval_options.max_new_tokens = 96;
  eval_options.batch_size = 16;
  auto questions = data::load_gsm8k(test_file);
  questions.resize(std::min<size_t>(questions.size(), 16));
  const auto summary = eval::evaluate_gsm8k(*model, tokenizer, prompt_template, questions, eval_options, out_dir + "/predictions.jsonl");
  std::printf("eval: %s\nadapter and predictions in %s\n", summary.to_json().c_str(), out_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (arg.size() > 1 && arg[0] == '-') {
      std::fprintf(stderr, "error: unknown option '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (argc > 6) {
    std::fprintf(stderr, "error: too many arguments\n%s", kUsage);
    return 2;
  }
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // ranktune::Error names the file and key; anything else is reported too
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
