// ranktune generate --model DIR [--adapter DIR] (--prompt TEXT | --prompt-ids "1 2 3") --max-new-tokens N
//                   [--chat [--system TEXT]] [--temperature T --top-k K --top-p P --seed S] [--stop STR ...]
//                   [--merge] [--print-ids]
// --chat renders the prompt as a user message (after an optional system message) through the
// model's own chat template, with the assistant header after it (add_generation_prompt).

#include "commands.h"
#include "ranktune/core/error.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <iostream>
#include <sstream>

namespace ranktune::cli {
namespace {

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    int64_t id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    RANKTUNE_CHECK(used == word.size() && id >= 0, "--prompt-ids: '", word, "' is not a token id (a non-negative integer)");
    ids.push_back(id);
  }
  RANKTUNE_CHECK(!ids.empty(), "--prompt-ids is empty");
  return ids;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a model (greedy unless --temperature is given)");
  struct Options {
    std::string model, adapter, tokenizer, prompt, prompt_ids, system;
    int64_t max_new_tokens = 64, top_k = 0, no_repeat_ngram_size = 0;
    double temperature = 0.0, top_p = 1.0, repetition_penalty = 1.0;
    uint64_t seed = 0;
    std::vector<std::string> stop;
    bool merge = false, print_ids = false, chat = false;
    std::optional<int64_t> init_seed;
    QuantizeFlags quantize;
    std::string dtype = "float32";
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("--adapter", o->adapter, "adapter directory (PEFT format)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer directory or file (default: the model directory)");
  auto* prompt = cmd->add_option("--prompt", o->prompt, "prompt text (BOS is added as the tokenizer's config says)");
  auto* prompt_ids = cmd->add_option("--prompt-ids", o->prompt_ids, "prompt token ids, space separated");
  prompt->excludes(prompt_ids);
  auto* chat = cmd->add_flag("--chat", o->chat,
                             "render --prompt as a user message through the model's chat template, then the "
                             "assistant header (the template writes any special tokens)");
  chat->excludes(prompt_ids);
  cmd->add_option("--system", o->system, "with --chat: a system message before the prompt")->needs(chat);
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate at most")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", o->temperature, "sample at this temperature (0: greedy)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", o->top_k, "sample among the k most likely tokens (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->top_p, "sample from the smallest set reaching this probability")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o->seed, "random seed for sampling");
  cmd->add_option("--repetition-penalty", o->repetition_penalty, "> 1 discourages repeating tokens (1: off)")->check(CLI::PositiveNumber);
  cmd->add_option("--no-repeat-ngram-size", o->no_repeat_ngram_size, "never repeat an n-gram of this size (0: off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--stop", o->stop, "stop once the generated text contains this string (repeatable)");
  cmd->add_option("--init-seed", o->init_seed,
                  "seed of a model directory without weights (default: the adapter's run's model.init_seed)");
  cmd->add_flag("--merge", o->merge, "merge the adapter into the weights before generating");
  cmd->add_flag("--print-ids", o->print_ids, "print the prompt and generated ids on one line instead of text");
  add_quantize_flags(*cmd, o->quantize);
  cmd->add_option("--dtype", o->dtype, "compute dtype: float32 or bfloat16 (bf16 weights: half the bytes a decode step reads)");
  cmd->callback([o] {
    RANKTUNE_CHECK(!o->prompt.empty() || !o->prompt_ids.empty(), "give --prompt TEXT or --prompt-ids \"1 2 3\"");
    std::vector<int64_t> prompt = o->prompt.empty() ? parse_ids(o->prompt_ids) : std::vector<int64_t>{};
    LoadedModel loaded = load_model(o->model, o->adapter, o->init_seed, o->quantize, o->dtype);
    if (o->merge && loaded.adapters) loaded.adapters->merge_adapter(/*safe=*/true);
    std::optional<tokenizer::Tokenizer> tok;
    if (!o->prompt.empty() || !o->print_ids || !o->stop.empty()) {
      tok = tokenizer::Tokenizer::from_pretrained(o->tokenizer.empty() ? o->model : o->tokenizer);
    }
    if (!o->prompt.empty() && o->chat) {
      std::vector<tokenizer::ChatMessage> messages;
      if (!o->system.empty()) messages.push_back({"system", o->system});
      messages.push_back({"user", o->prompt});
      tokenizer::ChatTemplateOptions chat_options;
      chat_options.add_generation_prompt = true;
      // As transformers' apply_chat_template(tokenize=True): no special tokens added to the text.
      prompt = tok->encode(tok->apply_chat_template(messages, chat_options), /*add_special_tokens=*/false);
    } else if (!o->prompt.empty()) {
      prompt = tok->encode(o->prompt, /*add_special_tokens=*/true);
    }
    auto options = model::GenerationOptions()
                       .max_new_tokens(o->max_new_tokens)
                       .temperature(o->temperature)
                       .top_k(o->top_k)
                       .top_p(o->top_p)
                       .seed(o->seed)
                       .repetition_penalty(o->repetition_penalty)
                       .no_repeat_ngram_size(o->no_repeat_ngram_size);
    std::vector<int64_t> eos = loaded.model->config().eos_token_ids;
    if (tok && tok->eos_token_id() && std::find(eos.begin(), eos.end(), *tok->eos_token_id()) == eos.end()) {
      eos.push_back(*tok->eos_token_id());
    }
    options.eos_token_ids(eos);
    if (!o->stop.empty()) {
      const tokenizer::Tokenizer t = *tok;
      options.stop(model::stop_at_strings(o->stop, [t](const std::vector<int64_t>& ids) { return t.decode(ids); }));
    }
    const auto result = model::generate(*loaded.model, {prompt}, options);
    if (o->print_ids) {
      for (size_t i = 0; i < prompt.size(); ++i) std::cout << (i ? " " : "") << prompt[i];
      for (int64_t id : result[0].tokens) std::cout << " " << id;
      std::cout << std::endl;
    } else {
      std::vector<int64_t> all = prompt;
      all.insert(all.end(), result[0].tokens.begin(), result[0].tokens.end());
      std::cout << tok->decode(all, /*skip_special_tokens=*/true) << std::endl;
    }
  });
}

}  // namespace ranktune::cli
