#pragma once
// Text <-> token ids with Hugging Face's ids, from the files a model ships with:
//
//   * tokenizer.json with a BPE model: byte-level BPE (GPT-2, Qwen2, Llama 3) and
//     SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Phi-3), added and special
//     tokens, normalizers NFC/NFD/Prepend/Replace/Strip, pre-tokenizers ByteLevel/Split/
//     Metaspace/Digits, decoders ByteLevel/Replace/ByteFallback/Fuse/Strip/Metaspace,
//     post-processors TemplateProcessing/BertProcessing/RobertaProcessing;
//   * tokenizer.model (SentencePiece), encoded by libsentencepiece itself.
//
// tokenizer_config.json beside the file, when present, supplies the special tokens
// (bos_token, eos_token, pad_token, ...) and add_bos_token / add_eos_token.
//
//   auto tok = ranktune::tokenizer::Tokenizer::from_pretrained("models/Qwen2-0.5B");
//   std::vector<int64_t> ids = tok.encode("Hello world", /*add_special_tokens=*/true);
//   std::string text = tok.decode(ids, /*skip_special_tokens=*/true);
//
// A Tokenizer is a cheap-to-copy handle to an immutable tokenizer; all methods are const and
// safe to call from several threads.

#include "ranktune/tokenizer/chat_template.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::tokenizer {

class Tokenizer {
 public:
  // `path` is a directory or a file.
  //   directory: tokenizer.json if present (what transformers' AutoTokenizer uses by default),
  //              else tokenizer.model; plus tokenizer_config.json if present.
  //   file:      *.model is a SentencePiece model, anything else a tokenizer.json; a
  //              tokenizer_config.json in the same directory is used too.
  // Throws ranktune::Error naming the file and the problem: missing file, invalid JSON, a
  // model type / normalizer / pre-tokenizer / decoder this library does not support, ...
  //
  // Note: when a model ships both files, they can disagree. A SentencePiece model may
  // normalize whitespace (stories260K's removes repeated, leading and trailing spaces) while
  // its converted tokenizer.json does not; pass the tokenizer.model path to get SentencePiece.
  static Tokenizer from_pretrained(const std::string& path);

  // Token ids of `text` (UTF-8; throws ranktune::Error when invalid). Special and added tokens
  // written in the text become their ids. add_special_tokens adds what Hugging Face adds: the
  // tokenizer_config.json add_bos_token/add_eos_token when given, else tokenizer.json's
  // post-processor (e.g. BOS for Llama 2), or BOS for a SentencePiece model.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = false) const;

  // The text of `ids`; ids that name no token are skipped, as in Hugging Face tokenizers.
  // For byte-level vocabularies decode(encode(s)) == s.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  // One more than the largest id, added tokens included.
  int64_t vocab_size() const;

  // From tokenizer_config.json (a string or {"content": ...}; null means none) or, without
  // that key, from the model: SentencePiece's own ids, or for tokenizer.json the one special
  // added token with a conventional name (bos: "<s>", "<|begin_of_text|>", "<bos>",
  // "<|startoftext|>"; eos: "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"; pad: "<pad>",
  // "<|pad|>", "[PAD]", "<|padding|>"), none when zero or several are present.
  std::optional<int64_t> bos_token_id() const;
  std::optional<int64_t> eos_token_id() const;
  std::optional<int64_t> pad_token_id() const;

  std::optional<int64_t> token_to_id(const std::string& token) const;
  // Throws ranktune::Error when no token has this id.
  std::string id_to_token(int64_t id) const;
  // Special tokens are skipped by decode(..., skip_special_tokens=true).
  bool is_special(int64_t id) const;

  // ---- chat templates (include/ranktune/tokenizer/chat_template.h) ----
  // The model's chat templates by name, in file order: "default" for a single template (from
  // chat_template.jinja beside the tokenizer, which wins as in transformers, or tokenizer_config's
  // chat_template), or the names of its list. Empty when the model has none.
  std::vector<std::string> chat_template_names() const;
  // The template text transformers would use: `name_or_template` names one of the model's
  // templates or is a template itself; "" picks "tool_use" when `with_tools` and present, else
  // "default". Throws ranktune::Error when there is none (naming the names available).
  std::string chat_template(const std::string& name_or_template = "", bool with_tools = false) const;
  // The conversation rendered through the chat template, exactly as transformers'
  // apply_chat_template(conversation, tokenize=False, ...) renders it. `conversation_json` is a
  // JSON list of message objects. Errors (bad JSON, an unsupported Jinja construct, the template's
  // raise_exception(msg): message() is msg) are ranktune::Error naming the file and the line.
  std::string apply_chat_template(const std::string& conversation_json, const ChatTemplateOptions& options = {}) const;
  std::string apply_chat_template(const std::vector<ChatMessage>& conversation,
                                  const ChatTemplateOptions& options = {}) const;

  // "bpe-byte-level", "bpe-sentencepiece", "bpe" (tokenizer.json) or "sentencepiece-model".
  std::string kind() const;
  // The file the tokenizer was loaded from.
  const std::string& source() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace ranktune::tokenizer
