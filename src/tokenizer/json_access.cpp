#include "tokenizer/json_access.h"

#include "ranktune/io/file.h"

namespace ranktune::tokenizer {

json read_json_file(const std::string& path) {
  const std::string text = io::read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann's message starts "[json.exception.parse_error.101] parse error at line 1, ...".
    const std::string what = e.what();
    const auto pos = what.find("] ");
    throw Error("invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)),
                ErrorContext{path, "", -1});
  }
}

std::string json_kind(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "list";
    case json::value_t::object: return "object";
    default: return "value";
  }
}

void expect_object(const json& value, const JsonPath& at) {
  if (!value.is_object()) at.fail("expected an object, got " + json_kind(value));
}

const json& required_field(const json& object, const std::string& key, const JsonPath& at) {
  expect_object(object, at);
  const auto it = object.find(key);
  if (it == object.end()) (at / key).fail("missing field");
  return *it;
}

std::string required_string(const json& object, const std::string& key, const JsonPath& at) {
  const json& value = required_field(object, key, at);
  if (!value.is_string()) (at / key).fail("expected a string, got " + json_kind(value) + " " + value.dump());
  return value.get<std::string>();
}

std::optional<std::string> optional_string(const json& object, const std::string& key, const JsonPath& at) {
  expect_object(object, at);
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) (at / key).fail("expected a string, got " + json_kind(*it) + " " + it->dump());
  return it->get<std::string>();
}

bool optional_bool(const json& object, const std::string& key, bool default_value, const JsonPath& at) {
  expect_object(object, at);
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return default_value;
  if (!it->is_boolean()) (at / key).fail("expected true or false, got " + json_kind(*it) + " " + it->dump());
  return it->get<bool>();
}

int64_t optional_index(const json& object, const std::string& key, int64_t default_value, const JsonPath& at) {
  expect_object(object, at);
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return default_value;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    (at / key).fail("expected a non-negative integer, got " + json_kind(*it) + " " + it->dump());
  }
  return it->get<int64_t>();
}

Pattern read_pattern(const json& object, const std::string& key, const JsonPath& at) {
  const json& value = required_field(object, key, at);
  const JsonPath here = at / key;
  if (value.is_object() && value.size() == 1) {
    if (value.contains("String")) return Pattern::literal(required_string(value, "String", here));
    if (value.contains("Regex")) {
      const std::string regex = required_string(value, "Regex", here);
      try {
        return Pattern::regex(regex);
      } catch (const Error& e) {
        throw e.with_context(here.context());
      }
    }
  }
  here.fail("expected {\"String\": ...} or {\"Regex\": ...}, got " + value.dump());
}

}  // namespace ranktune::tokenizer
