#include "tokenizer/tokenizer_config.h"

#include "tokenizer/json_access.h"
#include "tokenizer/pattern.h"

namespace ranktune::tokenizer {

namespace {

// A token given as "text" or as {"content": "text", "lstrip": ..., ...} (transformers'
// serialized AddedToken). Special tokens are not normalized unless the object says so.
AddedToken read_token(const json& value, const JsonPath& at) {
  AddedToken token;
  token.special = true;
  token.normalized = false;
  if (value.is_string()) {
    token.content = value.get<std::string>();
    return token;
  }
  if (!value.is_object()) at.fail("expected a string or an object with \"content\", got " + json_kind(value));
  token.content = required_string(value, "content", at);
  token.single_word = optional_bool(value, "single_word", false, at);
  token.lstrip = optional_bool(value, "lstrip", false, at);
  token.rstrip = optional_bool(value, "rstrip", false, at);
  token.normalized = optional_bool(value, "normalized", false, at);
  token.special = optional_bool(value, "special", true, at);
  return token;
}

ConfigSpecialToken read_role(const json& root, const char* key, const JsonPath& at) {
  ConfigSpecialToken out;
  const auto it = root.find(key);
  if (it == root.end()) return out;
  out.specified = true;
  if (!it->is_null()) out.token = read_token(*it, at / key);
  return out;
}

std::optional<bool> read_optional_bool(const json& root, const char* key, const JsonPath& at) {
  if (!root.contains(key) || root.at(key).is_null()) return std::nullopt;
  return optional_bool(root, key, false, at);
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& path) {
  const json root = read_json_file(path);
  const JsonPath at(path);
  expect_object(root, at);
  TokenizerConfig config;
  config.source = path;
  config.bos = read_role(root, "bos_token", at);
  config.eos = read_role(root, "eos_token", at);
  config.unk = read_role(root, "unk_token", at);
  config.pad = read_role(root, "pad_token", at);
  config.add_bos_token = read_optional_bool(root, "add_bos_token", at);
  config.add_eos_token = read_optional_bool(root, "add_eos_token", at);
  config.clean_up_tokenization_spaces = optional_bool(root, "clean_up_tokenization_spaces", false, at);

  if (root.contains("additional_special_tokens") && !root.at("additional_special_tokens").is_null()) {
    const json& list = root.at("additional_special_tokens");
    const JsonPath list_at = at / "additional_special_tokens";
    if (!list.is_array()) list_at.fail("expected a list, got " + json_kind(list));
    for (size_t i = 0; i < list.size(); ++i) config.additional_special_tokens.push_back(read_token(list[i], list_at[i]));
  }
  if (root.contains("added_tokens_decoder") && !root.at("added_tokens_decoder").is_null()) {
    const json& map = root.at("added_tokens_decoder");
    const JsonPath map_at = at / "added_tokens_decoder";
    expect_object(map, map_at);
    for (const auto& [id, value] : map.items()) {
      AddedToken token = read_token(value, map_at / id);
      if (token.special) config.additional_special_tokens.push_back(std::move(token));
    }
  }
  return config;
}

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) text = Pattern::literal(from).replace_all(text, to);
  return text;
}

}  // namespace ranktune::tokenizer
