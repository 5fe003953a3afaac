#pragma once
// Typed access to the fields of a YAML mapping, with errors that name the file, the key path and
// the 1-based line.
//
//   YAML::Node root = io::parse_yaml(io::read_file(path), path);
//   io::YamlFields fields(root, path);
//   std::string name = fields.get_string("name");          // missing → "'name': missing required key"
//   for (io::YamlFields& item : fields.get_map_list("few_shot")) item.get_string("question");
//   fields.reject_unknown({"name", "few_shot"});             // "'promt': unknown key (did you mean 'prompt'?)"
//
// For the layers above io; not installed: it exposes YAML::Node, a private dependency of the
// library.

#include "ranktune/core/error.h"

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ranktune::io {

// Parses one YAML document. A syntax error is a ranktune::Error naming `source` and the line.
YAML::Node parse_yaml(const std::string& text, const std::string& source);

// The node kind as a user would say it: "null", "scalar", "list", "mapping", "missing".
std::string yaml_type_name(const YAML::Node& node);

// Reads the fields of one YAML mapping and remembers which were read, so the caller can report
// the rest as unknown. Keys are looked up in file order; duplicate keys are an error.
class YamlFields {
 public:
  // `map` must be a mapping (a null node reads as an empty one). `path` is where `map` sits in the
  // document ("" at the top, "train" or "few_shot[2]" below); error keys are qualified with it.
  // `line` is used for errors about keys that are absent (default: the line of `map`).
  YamlFields(YAML::Node map, std::string source, std::string path = "", int64_t line = -1);

  bool has(const std::string& key) const;       // present (null counts as present)
  // Present with a non-null value. Marks the key as read either way.
  bool has_value(const std::string& key);
  YAML::Node raw(const std::string& key);        // marks `key` as read; an undefined node if absent

  // Required scalars: an absent key is an error ("missing required key").
  std::string get_string(const std::string& key);   // any scalar, as written ("72", "true")
  bool get_bool(const std::string& key);             // true/false (also yes/no, on/off)
  int64_t get_int(const std::string& key);
  double get_number(const std::string& key);
  // A string or a list of strings.
  std::vector<std::string> get_string_list(const std::string& key);
  // A nested mapping, and a list of mappings (items qualified "key[i]").
  YamlFields get_map(const std::string& key);
  std::vector<YamlFields> get_map_list(const std::string& key);

  // Keys present in the mapping that were never read, in file order.
  std::vector<std::string> unread() const;
  // Throws for the keys that are not in `valid`, naming the first one with its line and the
  // nearest valid key ("unknown key (did you mean 'prompt'?)"), and listing any others.
  void reject_unknown(const std::vector<std::string>& valid) const;

  // Error about `key`: context {source, qualified key, line of the key (of the map if absent)}.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  ErrorContext context(const std::string& key) const;
  int64_t line(const std::string& key) const;
  std::string qualified(const std::string& key) const;  // "few_shot[2].question"

  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }
  int64_t line() const { return line_; }

 private:
  struct Entry {
    std::string key;
    YAML::Node value;
    int64_t line;
    bool read = false;
  };
  const Entry* find(const std::string& key) const;
  Entry* find(const std::string& key);
  const YAML::Node& required_scalar(const std::string& key);

  std::vector<Entry> entries_;
  std::string source_;
  std::string path_;
  int64_t line_;
};

}  // namespace ranktune::io
