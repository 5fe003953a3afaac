#pragma once
// The parts of transformers' tokenizer_config.json the tokenizer uses: the special tokens
// (bos/eos/unk/pad, additional_special_tokens, added_tokens_decoder), add_bos_token /
// add_eos_token, clean_up_tokenization_spaces, and chat_template with the special-token strings a
// chat template sees. Other keys are ignored.

#include "added_tokens.h"

#include <optional>
#include <string>
#include <vector>

namespace ranktune::tokenizer {

// A role's token in the config: `specified` when the key is present; `token` is empty when
// its value is null ("this tokenizer has none").
struct ConfigSpecialToken {
  bool specified = false;
  std::optional<AddedToken> token;
};

struct TokenizerConfig {
  std::string source;
  ConfigSpecialToken bos, eos, unk, pad;
  std::vector<AddedToken> additional_special_tokens;  // also added_tokens_decoder's special entries
  std::optional<bool> add_bos_token, add_eos_token;
  bool clean_up_tokenization_spaces = false;

  // chat_template: a string (named "default") or a list of {"name", "template"}, in file order.
  std::vector<std::pair<std::string, std::string>> chat_templates;
  // transformers' special_tokens_map as a chat template sees it: bos_token, eos_token, unk_token,
  // sep_token, pad_token, cls_token, mask_token (each only when set to a token), as strings.
  std::vector<std::pair<std::string, std::string>> template_tokens;
  // The config's own additional_special_tokens list (added_tokens_decoder not included).
  std::vector<std::string> listed_additional_special_tokens;
};

// Throws ranktune::Error naming the file and the key on malformed input.
TokenizerConfig read_tokenizer_config(const std::string& path);

// transformers' clean_up_tokenization: " ." -> ".", " n't" -> "n't", ...
std::string clean_up_tokenization(std::string text);

}  // namespace ranktune::tokenizer
