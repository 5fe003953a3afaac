#pragma once
// Typed reads from tokenizer.json and tokenizer_config.json, with errors that name the file and
// the JSON path of the field ("pre_tokenizer.pretokenizers[1].behavior"). Internal header.
//
// Parsed as nlohmann::json (std::map objects): ordered_json inserts in linear time per key,
// which is quadratic for a 128k-entry vocabulary.

#include "ranktune/core/error.h"
#include "tokenizer/pattern.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace ranktune::tokenizer {

using json = nlohmann::json;

// A JSON value's location: the file and the path from the document root.
class JsonPath {
 public:
  explicit JsonPath(std::string file, std::string path = "") : file_(std::move(file)), path_(std::move(path)) {}

  JsonPath operator/(const std::string& key) const { return JsonPath(file_, path_.empty() ? key : path_ + "." + key); }
  JsonPath operator[](size_t index) const { return JsonPath(file_, path_ + "[" + std::to_string(index) + "]"); }

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  ErrorContext context() const { return ErrorContext{file_, path_, -1}; }

  [[noreturn]] void fail(const std::string& message) const { throw Error(message, context()); }

 private:
  std::string file_;
  std::string path_;
};

// Reads and parses a JSON file; errors name the file (missing, unreadable, invalid JSON).
json read_json_file(const std::string& path);

// The JSON type name as a user would say it ("string", "list", ...).
std::string json_kind(const json& value);

// `value` must be an object (`at` names it otherwise).
void expect_object(const json& value, const JsonPath& at);

// Field `key` of `object`: must be present.
const json& required_field(const json& object, const std::string& key, const JsonPath& at);
// Field `key` as a string: must be present and a string.
std::string required_string(const json& object, const std::string& key, const JsonPath& at);
// Field `key` as a string, or nullopt when absent or null.
std::optional<std::string> optional_string(const json& object, const std::string& key, const JsonPath& at);
// Field `key` as a boolean, or `default_value` when absent or null.
bool optional_bool(const json& object, const std::string& key, bool default_value, const JsonPath& at);
// Field `key` as a non-negative integer, or `default_value` when absent or null.
int64_t optional_index(const json& object, const std::string& key, int64_t default_value, const JsonPath& at);

// Field `key` as a {"String": "..."} or {"Regex": "..."} pattern (Split, Replace); a regex that
// does not compile is an error naming the field.
Pattern read_pattern(const json& object, const std::string& key, const JsonPath& at);

}  // namespace ranktune::tokenizer
