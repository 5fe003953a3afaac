#pragma once
// What the Tokenizer facade needs from a loaded file. Two implementations: tokenizer.json
// (tokenizer_json.cpp) and SentencePiece's tokenizer.model (sentencepiece_model.cpp).

#include "added_tokens.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::tokenizer {

enum class SpecialRole { bos, eos, pad, unk };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string kind() const = 0;
  // Ids of `text` (valid UTF-8) with no special tokens added; added and special tokens written
  // in the text are recognised. Thread-safe.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // The file's own add_special_tokens=true rule (a post-processor, or BOS for SentencePiece).
  virtual void add_special_tokens(std::vector<int64_t>& ids) const = 0;
  // The text of `ids`; ids that name no token are skipped.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;

  virtual int64_t vocab_size() const = 0;  // max id + 1, added tokens included
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  virtual std::optional<std::string> id_to_token(int64_t id) const = 0;
  virtual bool is_special(int64_t id) const = 0;
  // The id the file itself gives a role (SentencePiece's bos_id(), or the one special added
  // token with a conventional name such as "<s>" or "<|end_of_text|>").
  virtual std::optional<int64_t> role_id(SpecialRole role) const = 0;

  // Makes `token.content` a special token that is cut out of the text (a special token of
  // tokenizer_config.json). Returns false when the vocabulary does not have it. Call before
  // sharing the backend between threads.
  virtual bool register_special_token(const AddedToken& token) = 0;
};

// Loaders; errors name `path`.
std::unique_ptr<Backend> load_tokenizer_json(const std::string& path);
std::unique_ptr<Backend> load_sentencepiece_model(const std::string& path);

}  // namespace ranktune::tokenizer
