#pragma once
// Typed access to the fields of a JSON object, with errors that name the file and the field.
// Internal: nlohmann::json stays out of the public headers.

#include "ranktune/core/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ranktune::io {

using ordered_json = nlohmann::ordered_json;

// Parses JSON text; throws ranktune::Error naming `source` and the position on a syntax error.
ordered_json parse_json(const std::string& text, const std::string& source);

// Reads fields of one JSON object and remembers which were read, so the caller can report the
// rest as unknown.
class JsonFields {
 public:
  JsonFields(const ordered_json& object, std::string source);

  bool has(const std::string& key) const;             // present (null counts as present)
  bool is_null(const std::string& key) const;         // absent or null
  // Present with a non-null value. Marks the key as read either way, so an explicit null is
  // not reported as unknown.
  bool has_value(const std::string& key);
  const ordered_json& raw(const std::string& key);    // marks `key` as read

  bool get_bool(const std::string& key);
  int64_t get_int(const std::string& key);             // accepts 8 and 8.0, not 8.5
  double get_number(const std::string& key);
  std::string get_string(const std::string& key);
  std::vector<std::string> get_string_list(const std::string& key);  // a string or a list of them
  std::vector<int64_t> get_int_list(const std::string& key);         // an integer or a list

  // Fields present in the object that were never read, in file order.
  std::vector<std::string> unread() const;

  // Error naming the source file and `key`.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

  const std::string& source() const { return source_; }

 private:
  const ordered_json& object_;
  std::string source_;
  std::set<std::string> read_;
};

// The JSON type name as a user would say it ("string", "integer", "list", ...).
std::string json_type_name(const ordered_json& value);

}  // namespace ranktune::io
