#include "ranktune/io/json.h"

#include <cmath>
#include <limits>

namespace ranktune::io {
namespace {

template <class Json>
std::string type_name(const Json& value) {
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

// "got integer 3": the type and the value as written, for type errors.
template <class Json>
std::string got(const Json& value) {
  return "got " + type_name(value) + " " + value.dump();
}

}  // namespace

std::string json_exception_message(const std::exception& e) {
  // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> the part after "] ".
  const std::string what = e.what();
  const auto pos = what.find("] ");
  return pos == std::string::npos ? what : what.substr(pos + 2);
}

template <class Json>
Json parse_json(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error (syntax) or out_of_range (a number beyond double's range, "1e999").
    throw Error("invalid JSON: " + json_exception_message(e), ErrorContext{source, "", -1});
  }
}
template ordered_json parse_json<ordered_json>(const std::string&, const std::string&);
template json parse_json<json>(const std::string&, const std::string&);

std::string json_type_name(const ordered_json& value) { return type_name(value); }
std::string json_type_name(const json& value) { return type_name(value); }

template <class Json>
BasicJsonFields<Json>::BasicJsonFields(const Json& object, std::string source)
    : BasicJsonFields(object, JsonPath(std::move(source))) {}

template <class Json>
BasicJsonFields<Json>::BasicJsonFields(const Json& object, JsonPath at) : object_(object), at_(std::move(at)) {
  if (!object_.is_object()) at_.fail("expected an object, got " + type_name(object_));
}

template <class Json>
bool BasicJsonFields<Json>::has(const std::string& key) const {
  return object_.contains(key);
}

template <class Json>
bool BasicJsonFields<Json>::is_null(const std::string& key) const {
  return !object_.contains(key) || object_.at(key).is_null();
}

template <class Json>
bool BasicJsonFields<Json>::has_value(const std::string& key) {
  if (!object_.contains(key)) return false;
  read_.insert(key);
  return !object_.at(key).is_null();
}

template <class Json>
const Json& BasicJsonFields<Json>::raw(const std::string& key) {
  const auto it = object_.find(key);
  if (it == object_.end()) fail(key, "missing field");
  read_.insert(key);
  return *it;
}

template <class Json>
void BasicJsonFields<Json>::fail(const std::string& key, const std::string& message) const {
  at(key).fail(message);
}

template <class Json>
bool BasicJsonFields<Json>::get_bool(const std::string& key) {
  const Json& v = raw(key);
  if (!v.is_boolean()) fail(key, "expected true or false, " + got(v));
  return v.template get<bool>();
}

template <class Json>
int64_t BasicJsonFields<Json>::get_int(const std::string& key) {
  const Json& v = raw(key);
  // A whole number beyond int64 (an unsigned above 2^63-1, or one nlohmann had to read as a double:
  // 4e27) is refused: converting it would wrap or be undefined behaviour.
  const auto too_large = [&] { fail(key, "integer out of range (at most 9223372036854775807 in magnitude), " + got(v)); };
  if (v.is_number_unsigned()) {
    if (v.template get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) too_large();
    return v.template get<int64_t>();
  }
  if (v.is_number_integer()) return v.template get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.template get<double>();
    if (std::floor(d) == d && std::isfinite(d)) {
      if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) too_large();
      return static_cast<int64_t>(d);
    }
  }
  fail(key, "expected an integer, " + got(v));
}

template <class Json>
double BasicJsonFields<Json>::get_number(const std::string& key) {
  const Json& v = raw(key);
  if (!v.is_number()) fail(key, "expected a number, " + got(v));
  return v.template get<double>();
}

template <class Json>
std::string BasicJsonFields<Json>::get_string(const std::string& key) {
  const Json& v = raw(key);
  if (!v.is_string()) fail(key, "expected a string, " + got(v));
  return v.template get<std::string>();
}

template <class Json>
std::vector<std::string> BasicJsonFields<Json>::get_string_list(const std::string& key) {
  const Json& v = raw(key);
  if (v.is_string()) return {v.template get<std::string>()};
  if (!v.is_array()) fail(key, "expected a string or a list of strings, got " + type_name(v));
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string()) fail(key, "expected a list of strings, found " + type_name(item) + " " + item.dump());
    out.push_back(item.template get<std::string>());
  }
  return out;
}

template <class Json>
std::vector<int64_t> BasicJsonFields<Json>::get_int_list(const std::string& key) {
  const Json& v = raw(key);
  if (v.is_number_integer()) return {v.template get<int64_t>()};
  if (!v.is_array()) fail(key, "expected an integer or a list of integers, got " + type_name(v));
  std::vector<int64_t> out;
  for (const auto& item : v) {
    if (!item.is_number_integer()) fail(key, "expected a list of integers, found " + type_name(item) + " " + item.dump());
    out.push_back(item.template get<int64_t>());
  }
  return out;
}

template <class Json>
const Json& BasicJsonFields<Json>::get_list(const std::string& key) {
  const Json& v = raw(key);
  if (!v.is_array()) fail(key, "expected a list, got " + type_name(v));
  return v;
}

template <class Json>
BasicJsonFields<Json> BasicJsonFields<Json>::get_object(const std::string& key) {
  return BasicJsonFields(raw(key), at(key));
}

template <class Json>
bool BasicJsonFields<Json>::get_bool(const std::string& key, bool default_value) {
  return has_value(key) ? get_bool(key) : default_value;
}

template <class Json>
int64_t BasicJsonFields<Json>::get_index(const std::string& key, int64_t default_value) {
  if (!has_value(key)) return default_value;
  const Json& v = raw(key);
  if (!v.is_number_integer() || v.template get<int64_t>() < 0) fail(key, "expected a non-negative integer, " + got(v));
  return v.template get<int64_t>();
}

template <class Json>
std::optional<std::string> BasicJsonFields<Json>::get_optional_string(const std::string& key) {
  if (!has_value(key)) return std::nullopt;
  return get_string(key);
}

template <class Json>
std::vector<std::string> BasicJsonFields<Json>::unread() const {
  std::vector<std::string> out;
  for (const auto& item : object_.items()) {
    if (read_.count(item.key()) == 0) out.push_back(item.key());
  }
  return out;
}

template class BasicJsonFields<ordered_json>;
template class BasicJsonFields<json>;

}  // namespace ranktune::io
