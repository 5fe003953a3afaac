#pragma once
// Typed reads from JSON objects, with errors that name the file and the JSON path of the field:
//   "tokenizer.json: 'pre_tokenizer.pretokenizers[1].behavior': expected a string, got integer 3"
//
//   const io::ordered_json root = io::parse_json(io::read_file(path), path);
//   io::JsonFields f(root, path);
//   const int64_t r = f.get_int("r");                     // 8 and 8.0, not 8.5
//   const bool fuse = f.get_bool("fuse_unk", false);      // the default when absent or null
//   io::JsonFields rope = f.get_object("rope_scaling");   // its errors name 'rope_scaling.factor'
//   for (const std::string& key : f.unread()) ...;        // fields never read, in file order
//
// For the layers above io; not installed: it exposes nlohmann::json, a private dependency of the
// library.

#include "ranktune/core/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <exception>
#include <string>
#include <vector>

namespace ranktune::io {

// Objects kept in file order: configs and headers, whose unknown keys are reported as written.
using ordered_json = nlohmann::ordered_json;
// Objects as sorted maps: large documents (tokenizer.json's 128k-entry vocabulary would take
// ordered_json quadratic time to build).
using json = nlohmann::json;

// Parses JSON text; a syntax error is a ranktune::Error naming `source` and the position.
template <class Json = ordered_json>
Json parse_json(const std::string& text, const std::string& source);

// The JSON type name as a user would say it ("string", "integer", "list", ...).
// nlohmann's exception text without its "[json.exception.<kind>.<id>] " prefix, for messages.
std::string json_exception_message(const std::exception& e);

std::string json_type_name(const ordered_json& value);
std::string json_type_name(const json& value);

// Where a JSON value sits: the file, and the path from the document root ("model.vocab",
// "added_tokens[3]"; "" for the root).
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

// Reads the fields of one JSON object and remembers which were read, so the caller can report the
// rest as unknown. `Json` is ordered_json or json (JsonFields, SortedJsonFields below).
template <class Json>
class BasicJsonFields {
 public:
  // `object` must be a JSON object (else an error naming `source` or `at`); it must outlive this.
  BasicJsonFields(const Json& object, std::string source);
  BasicJsonFields(const Json& object, JsonPath at);

  bool has(const std::string& key) const;      // present (null counts as present)
  bool is_null(const std::string& key) const;  // absent or null
  // Present with a non-null value. Marks the key as read either way, so an explicit null is not
  // reported as unknown.
  bool has_value(const std::string& key);
  // The value of a present field (absent: "missing field"); marks it as read.
  const Json& raw(const std::string& key);

  // Required fields: absent is an error, and so is a value of the wrong type.
  bool get_bool(const std::string& key);
  int64_t get_int(const std::string& key);  // accepts 8 and 8.0, not 8.5
  double get_number(const std::string& key);
  std::string get_string(const std::string& key);
  std::vector<std::string> get_string_list(const std::string& key);  // a string or a list of them
  std::vector<int64_t> get_int_list(const std::string& key);         // an integer or a list of them
  const Json& get_list(const std::string& key);                      // a list (items at at(key)[i])
  BasicJsonFields get_object(const std::string& key);                // its errors name "key.field"

  // Optional fields: absent or null gives the default.
  bool get_bool(const std::string& key, bool default_value);
  int64_t get_index(const std::string& key, int64_t default_value);  // a non-negative integer
  std::optional<std::string> get_optional_string(const std::string& key);

  // Fields present in the object that were never read, in the object's order.
  std::vector<std::string> unread() const;

  // Error naming the file and the field's path.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  JsonPath at(const std::string& key) const { return at_ / key; }
  const JsonPath& path() const { return at_; }
  const std::string& source() const { return at_.file(); }
  const Json& object() const { return object_; }

 private:
  const Json& object_;
  JsonPath at_;
  std::set<std::string> read_;
};

using JsonFields = BasicJsonFields<ordered_json>;
using SortedJsonFields = BasicJsonFields<json>;

extern template class BasicJsonFields<ordered_json>;
extern template class BasicJsonFields<json>;

}  // namespace ranktune::io
