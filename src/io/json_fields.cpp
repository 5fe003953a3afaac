#include "io/json_fields.h"

#include <cmath>

namespace ranktune::io {

ordered_json parse_json(const std::string& text, const std::string& source) {
  try {
    return ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 1,
    // column 2: ..."; keep the part after the bracket.
    std::string what = e.what();
    const auto pos = what.find("] ");
    throw Error("invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)),
                ErrorContext{source, "", -1});
  }
}

std::string json_type_name(const ordered_json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer";
    case nlohmann::json::value_t::number_float: return "number";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::array: return "list";
    case nlohmann::json::value_t::object: return "object";
    default: return "value";
  }
}

JsonFields::JsonFields(const ordered_json& object, std::string source)
    : object_(object), source_(std::move(source)) {
  if (!object_.is_object()) {
    throw Error("expected a JSON object, got " + json_type_name(object_), ErrorContext{source_, "", -1});
  }
}

bool JsonFields::has(const std::string& key) const { return object_.contains(key); }

bool JsonFields::is_null(const std::string& key) const {
  return !object_.contains(key) || object_.at(key).is_null();
}

bool JsonFields::has_value(const std::string& key) {
  if (!object_.contains(key)) return false;
  read_.insert(key);
  return !object_.at(key).is_null();
}

const ordered_json& JsonFields::raw(const std::string& key) {
  read_.insert(key);
  return object_.at(key);
}

void JsonFields::fail(const std::string& key, const std::string& message) const {
  throw Error(message, ErrorContext{source_, key, -1});
}

bool JsonFields::get_bool(const std::string& key) {
  const auto& v = raw(key);
  if (!v.is_boolean()) fail(key, "expected true or false, got " + json_type_name(v) + " " + v.dump());
  return v.get<bool>();
}

int64_t JsonFields::get_int(const std::string& key) {
  const auto& v = raw(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) == d && std::isfinite(d)) return static_cast<int64_t>(d);
  }
  fail(key, "expected an integer, got " + json_type_name(v) + " " + v.dump());
}

double JsonFields::get_number(const std::string& key) {
  const auto& v = raw(key);
  if (!v.is_number()) fail(key, "expected a number, got " + json_type_name(v) + " " + v.dump());
  return v.get<double>();
}

std::string JsonFields::get_string(const std::string& key) {
  const auto& v = raw(key);
  if (!v.is_string()) fail(key, "expected a string, got " + json_type_name(v) + " " + v.dump());
  return v.get<std::string>();
}

std::vector<std::string> JsonFields::get_string_list(const std::string& key) {
  const auto& v = raw(key);
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) fail(key, "expected a string or a list of strings, got " + json_type_name(v));
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string()) fail(key, "expected a list of strings, found " + json_type_name(item) + " " + item.dump());
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::vector<int64_t> JsonFields::get_int_list(const std::string& key) {
  const auto& v = raw(key);
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (!v.is_array()) fail(key, "expected an integer or a list of integers, got " + json_type_name(v));
  std::vector<int64_t> out;
  for (const auto& item : v) {
    if (!item.is_number_integer()) fail(key, "expected a list of integers, found " + json_type_name(item) + " " + item.dump());
    out.push_back(item.get<int64_t>());
  }
  return out;
}

std::vector<std::string> JsonFields::unread() const {
  std::vector<std::string> out;
  for (const auto& item : object_.items()) {
    if (read_.count(item.key()) == 0) out.push_back(item.key());
  }
  return out;
}

}  // namespace ranktune::io
