#pragma once
// Chain-of-thought prompt templates: YAML files that say how a question becomes a prompt, how a
// worked solution becomes the training target, where generation stops and how the final answer is
// found in a completion. docs/templates.md describes the file format.
//
//   auto t = ranktune::prompt::PromptTemplate::load("gsm8k-cot");
//   std::string prompt = t.render_prompt(question);                // what the model sees
//   std::string target = t.render_response(rationale, "72");       // what it learns to write
//
// For the plain format, render_response has no end marker: append the tokenizer's EOS token. For
// chat formats it ends with the end-of-turn marker (<|im_end|>, <|eot_id|>).
//
// `format: chat` uses the model's own chat template (tokenizer_config.json's chat_template): the
// system text, few-shot exemplars and question become system/user/assistant messages rendered by
// Tokenizer::apply_chat_template. Such a template renders once it knows the tokenizer:
//   t.use_tokenizer(tok);   // the trainer and evaluate_gsm8k do this themselves

#include "ranktune/tokenizer/tokenizer.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::prompt {

// How turns are wrapped. plain: no markers; chatml: <|im_start|>role ... <|im_end|> (Qwen and
// others); llama3: <|start_header_id|>role<|end_header_id|> ... <|eot_id|> after <|begin_of_text|>;
// chat: the model's own chat template.
enum class ChatFormat { plain, chatml, llama3, chat };

// "plain", "chatml", "llama3", "chat".
std::string to_string(ChatFormat format);

struct FewShotExample {
  std::string question, rationale, answer;
};

// What a template retrieves per question (its `exemplars` and `context` keys; docs/retrieval.md).
class RetrievedExemplars;
class RetrievedContext;

class PromptTemplate {
 public:
  // `name_or_path` is a path when it contains '/' or ends in .yaml/.yml; otherwise a name looked up
  // as <dir>/<name>.yaml (or .yml) in template_search_path(). An unknown name is an error listing
  // the available names.
  static PromptTemplate load(const std::string& name_or_path);
  // Parses and validates template YAML. `source` names the text in errors (usually its path) and
  // gives the default name (the file stem). Every error names the source, the key and the line.
  static PromptTemplate parse(const std::string& yaml_text, const std::string& source);

  // The full prompt: system text, few-shot exemplars, then `prompt` with the question. Plain:
  // blocks separated by a blank line ("\n\n"). Chat formats: a system turn (when `system` is set),
  // one user/assistant turn pair per exemplar, the user turn, and the assistant header.
  std::string render_prompt(const std::string& question) const;
  // Any conversation in this template's chat roles (its system, prompt and response texts are not
  // used); with add_generation_prompt the assistant header follows. chatml and llama3 wrap each
  // turn as render_prompt does; plain joins the contents with a blank line (and ends with one when
  // add_generation_prompt); chat renders through the model's chat template (after use_tokenizer).
  // Roles are written as given.
  std::string render_chat(const std::vector<tokenizer::ChatMessage>& messages, bool add_generation_prompt) const;
  // `response` with the rationale and answer; chat formats add the end-of-turn marker.
  std::string render_response(const std::string& rationale, const std::string& answer) const;
  // True when render_prompt already starts with a BOS-like marker (llama3's <|begin_of_text|>), or
  // the model's chat template decides (format: chat, which writes BOS itself when the model has
  // one): the caller must not add the tokenizer's BOS token again.
  bool text_has_bos() const { return format_ == ChatFormat::llama3 || format_ == ChatFormat::chat; }
  // "<|im_end|>", "<|eot_id|>", or "" for plain; for format: chat, what the model's template
  // writes after an assistant message ("<|im_end|>", "<|eot_id|>", "</s>"), once use_tokenizer ran.
  std::string end_of_turn() const;

  // format: chat: renders through `tok`'s chat template from now on, and adds its end-of-turn
  // marker to stop(). Throws when the tokenizer has no chat template. Other formats: no effect.
  void use_tokenizer(const tokenizer::Tokenizer& tok);
  // The messages render_prompt gives a chat template: system (when set), a user/assistant pair per
  // exemplar, the user's question.
  std::vector<tokenizer::ChatMessage> messages(const std::string& question) const;

  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  ChatFormat format() const { return format_; }
  const std::string& system() const { return system_; }
  const std::string& prompt() const { return prompt_; }      // contains {question} (and {context})
  const std::string& response() const { return response_; }  // contains {rationale} and {answer}
  const std::vector<FewShotExample>& few_shot() const { return few_shot_; }

  // Retrieval (docs/retrieval.md). With an `exemplars` key, each question's exemplars are the k
  // corpus records nearest to it by BM25 (they replace few_shot); with a `context` key, the
  // prompt's {context} gets the k corpus documents nearest to the question.
  bool retrieves_exemplars() const { return retrieved_exemplars_ != nullptr; }
  bool retrieves_context() const { return retrieved_context_ != nullptr; }
  // The exemplars render_prompt shows before `question`: retrieved, or few_shot.
  std::vector<FewShotExample> exemplars_for(const std::string& question) const;
  // The text {context} receives for `question` ("" without a `context` key).
  std::string context_for(const std::string& question) const;
  // This template with its fixed few_shot exemplars instead of retrieved ones (for comparisons).
  PromptTemplate with_fixed_exemplars() const;
  // How many exemplars a prompt gets: the retriever's k, or few_shot's size.
  int64_t shots() const;
  // Generation stops at the first of these; answer extraction and rewards cut the completion
  // there too. Chat formats always include their end-of-turn marker.
  const std::vector<std::string>& stop() const { return stop_; }
  // Regex with one capture group: the final answer in this template's own ("strict") format.
  const std::string& answer_pattern() const { return answer_pattern_; }
  // Optional regex the whole completion must match for format_reward (R1's <think>/<answer>
  // structure); "" when the template has none (then the answer_pattern being found is enough).
  const std::string& format_pattern() const { return format_pattern_; }
  // The `tools:` section (tools.h): the tool-call syntax ("calculator", "json"; "" without one)
  // and the text inserted after a call, with {result} ("" for the syntax's default).
  const std::string& tool_syntax() const { return tool_syntax_; }
  const std::string& tool_response() const { return tool_response_; }
  // The file (or the `source` given to parse).
  const std::string& source() const { return source_; }

 private:
  PromptTemplate() = default;
  // `prompt` with the question (and its retrieved {context}).
  std::string user_text(const std::string& question) const;

  std::string name_, description_, source_;
  ChatFormat format_ = ChatFormat::plain;
  std::string system_, prompt_, response_;
  std::vector<FewShotExample> few_shot_;
  std::vector<std::string> stop_;
  std::string answer_pattern_, format_pattern_;
  std::shared_ptr<const RetrievedExemplars> retrieved_exemplars_;
  std::shared_ptr<const RetrievedContext> retrieved_context_;
  std::string tool_syntax_, tool_response_;
  std::optional<tokenizer::Tokenizer> chat_tokenizer_;  // format: chat, after use_tokenizer
  std::string chat_end_of_turn_;
};

// Directories searched for template names, in order: each entry of $RANKTUNE_TEMPLATE_PATH
// (colon-separated), the source tree's examples/templates (when built with RANKTUNE_TEMPLATE_DIR),
// then the installed share/ranktune/templates. Only existing directories are listed.
std::vector<std::string> template_search_path();

// Names of the templates found in template_search_path(), sorted, without duplicates.
std::vector<std::string> available_templates();

}  // namespace ranktune::prompt
