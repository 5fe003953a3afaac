#include "tokenizer_config.h"

#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "pattern.h"

namespace ranktune::tokenizer {

namespace {

// A token given as "text" or as {"content": "text", "lstrip": ..., ...} (transformers'
// serialized AddedToken). Special tokens are not normalized unless the object says so.
AddedToken read_token(const io::json& value, const io::JsonPath& at) {
  AddedToken token;
  token.special = true;
  token.normalized = false;
  if (value.is_string()) {
    token.content = value.get<std::string>();
    return token;
  }
  if (!value.is_object()) at.fail("expected a string or an object with \"content\", got " + io::json_type_name(value));
  io::SortedJsonFields fields(value, at);
  token.content = fields.get_string("content");
  token.single_word = fields.get_bool("single_word", false);
  token.lstrip = fields.get_bool("lstrip", false);
  token.rstrip = fields.get_bool("rstrip", false);
  token.normalized = fields.get_bool("normalized", false);
  token.special = fields.get_bool("special", true);
  return token;
}

ConfigSpecialToken read_role(io::SortedJsonFields& root, const char* key) {
  ConfigSpecialToken out;
  if (!root.has(key)) return out;
  out.specified = true;
  if (root.has_value(key)) out.token = read_token(root.raw(key), root.at(key));
  return out;
}

// "chat_template": "text", or [{"name": "default", "template": "text"}, {"name": "tool_use", ...}].
std::vector<std::pair<std::string, std::string>> read_chat_templates(io::SortedJsonFields& root) {
  std::vector<std::pair<std::string, std::string>> templates;
  if (!root.has_value("chat_template")) return templates;
  const io::json& value = root.raw("chat_template");
  const io::JsonPath at = root.at("chat_template");
  if (value.is_string()) {
    templates.emplace_back("default", value.get<std::string>());
    return templates;
  }
  if (!value.is_array()) at.fail("expected a string or a list of {\"name\", \"template\"}, got " + io::json_type_name(value));
  for (size_t i = 0; i < value.size(); ++i) {
    io::SortedJsonFields entry(value[i], at[i]);
    templates.emplace_back(entry.get_string("name"), entry.get_string("template"));
  }
  return templates;
}

std::optional<bool> read_optional_bool(io::SortedJsonFields& root, const char* key) {
  if (!root.has_value(key)) return std::nullopt;
  return root.get_bool(key);
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& path) {
  const io::json document = io::parse_json<io::json>(io::read_file(path), path);
  io::SortedJsonFields root(document, path);
  TokenizerConfig config;
  config.source = path;
  config.bos = read_role(root, "bos_token");
  config.eos = read_role(root, "eos_token");
  config.unk = read_role(root, "unk_token");
  config.pad = read_role(root, "pad_token");
  config.add_bos_token = read_optional_bool(root, "add_bos_token");
  config.add_eos_token = read_optional_bool(root, "add_eos_token");
  config.clean_up_tokenization_spaces = root.get_bool("clean_up_tokenization_spaces", false);

  if (root.has_value("additional_special_tokens")) {
    const io::json& list = root.get_list("additional_special_tokens");
    const io::JsonPath list_at = root.at("additional_special_tokens");
    for (size_t i = 0; i < list.size(); ++i) {
      config.additional_special_tokens.push_back(read_token(list[i], list_at[i]));
      config.listed_additional_special_tokens.push_back(config.additional_special_tokens.back().content);
    }
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (root.has_value(key)) config.template_tokens.emplace_back(key, read_token(root.raw(key), root.at(key)).content);
  }
  config.chat_templates = read_chat_templates(root);
  if (root.has_value("added_tokens_decoder")) {
    const io::SortedJsonFields map = root.get_object("added_tokens_decoder");
    for (const auto& [id, value] : map.object().items()) {
      AddedToken token = read_token(value, map.at(id));
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
