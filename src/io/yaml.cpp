#include "ranktune/io/yaml.h"

#include "ranktune/core/strings.h"

#include <cmath>

namespace ranktune::io {

// ---- parsing ---------------------------------------------------------------------------------

YAML::Node parse_yaml(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    const int64_t line = e.mark.is_null() ? -1 : static_cast<int64_t>(e.mark.line) + 1;
    throw Error("invalid YAML: " + e.msg, ErrorContext{source, "", line});
  }
}

namespace {

// 1-based line where `node` starts in its text, or -1 (undefined or built in code).
int64_t yaml_line(const YAML::Node& node) {
  if (!node.IsDefined()) return -1;
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? -1 : static_cast<int64_t>(mark.line) + 1;
}

}  // namespace

std::string yaml_type_name(const YAML::Node& node) {
  if (!node.IsDefined()) return "missing";
  switch (node.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Scalar: return "scalar";
    case YAML::NodeType::Sequence: return "list";
    case YAML::NodeType::Map: return "mapping";
    default: return "value";
  }
}

// ---- YamlFields ------------------------------------------------------------------------------

YamlFields::YamlFields(YAML::Node map, std::string source, std::string path, int64_t line)
    : source_(std::move(source)), path_(std::move(path)), line_(line >= 0 ? line : yaml_line(map)) {
  if (!map.IsDefined() || map.IsNull()) return;
  if (!map.IsMap()) {
    throw Error("expected a mapping of keys to values, got a " + yaml_type_name(map),
                ErrorContext{source_, path_, line_});
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    const int64_t key_line = yaml_line(it->first);
    if (!it->first.IsScalar()) {
      throw Error("keys must be plain strings, got a " + yaml_type_name(it->first),
                  ErrorContext{source_, path_, key_line});
    }
    const std::string key = it->first.Scalar();
    if (const Entry* previous = find(key)) {
      throw Error(c10::str("duplicate key (first given on line ", previous->line, ")"),
                  ErrorContext{source_, qualified(key), key_line});
    }
    entries_.push_back(Entry{key, it->second, key_line});
  }
}

const YamlFields::Entry* YamlFields::find(const std::string& key) const {
  for (const auto& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

YamlFields::Entry* YamlFields::find(const std::string& key) {
  return const_cast<Entry*>(static_cast<const YamlFields*>(this)->find(key));
}

std::string YamlFields::qualified(const std::string& key) const {
  if (path_.empty()) return key;
  if (key.empty()) return path_;
  return path_ + "." + key;
}

int64_t YamlFields::line(const std::string& key) const {
  const Entry* e = find(key);
  return e != nullptr ? e->line : line_;
}

ErrorContext YamlFields::context(const std::string& key) const {
  return ErrorContext{source_, qualified(key), line(key)};
}

void YamlFields::fail(const std::string& key, const std::string& message) const {
  throw Error(message, context(key));
}

bool YamlFields::has(const std::string& key) const { return find(key) != nullptr; }

bool YamlFields::has_value(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) return false;
  e->read = true;
  return !e->value.IsNull();
}

YAML::Node YamlFields::raw(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) return YAML::Node(YAML::NodeType::Undefined);
  e->read = true;
  return e->value;
}

const YAML::Node& YamlFields::required_scalar(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) fail(key, "missing required key");
  e->read = true;
  if (!e->value.IsScalar()) fail(key, "expected a single value, got a " + yaml_type_name(e->value));
  return e->value;
}

std::string YamlFields::get_string(const std::string& key) { return required_scalar(key).Scalar(); }

bool YamlFields::get_bool(const std::string& key) {
  const YAML::Node& v = required_scalar(key);
  bool out = false;
  if (!YAML::convert<bool>::decode(v, out)) fail(key, "expected true or false, got '" + v.Scalar() + "'");
  return out;
}

int64_t YamlFields::get_int(const std::string& key) {
  const YAML::Node& v = required_scalar(key);
  int64_t out = 0;
  if (YAML::convert<int64_t>::decode(v, out)) return out;
  double d = 0;
  if (YAML::convert<double>::decode(v, d) && std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15) {
    return static_cast<int64_t>(d);
  }
  fail(key, "expected an integer, got '" + v.Scalar() + "'");
}

double YamlFields::get_number(const std::string& key) {
  const YAML::Node& v = required_scalar(key);
  double out = 0;
  if (!YAML::convert<double>::decode(v, out)) fail(key, "expected a number, got '" + v.Scalar() + "'");
  return out;
}

std::vector<std::string> YamlFields::get_string_list(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) fail(key, "missing required key");
  e->read = true;
  if (e->value.IsScalar()) return {e->value.Scalar()};
  if (!e->value.IsSequence()) fail(key, "expected a string or a list of strings, got a " + yaml_type_name(e->value));
  std::vector<std::string> out;
  for (size_t i = 0; i < e->value.size(); ++i) {
    const YAML::Node item = e->value[i];
    if (!item.IsScalar()) {
      throw Error(c10::str("expected a string, got a ", yaml_type_name(item)),
                  ErrorContext{source_, c10::str(qualified(key), "[", i, "]"), yaml_line(item)});
    }
    out.push_back(item.Scalar());
  }
  return out;
}

YamlFields YamlFields::get_map(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) fail(key, "missing required key");
  e->read = true;
  if (!e->value.IsMap() && !e->value.IsNull()) fail(key, "expected a mapping, got a " + yaml_type_name(e->value));
  return YamlFields(e->value, source_, qualified(key), e->line);
}

std::vector<YamlFields> YamlFields::get_map_list(const std::string& key) {
  Entry* e = find(key);
  if (e == nullptr) fail(key, "missing required key");
  e->read = true;
  if (e->value.IsNull()) return {};
  if (!e->value.IsSequence()) fail(key, "expected a list, got a " + yaml_type_name(e->value));
  std::vector<YamlFields> out;
  for (size_t i = 0; i < e->value.size(); ++i) {
    const YAML::Node item = e->value[i];
    const std::string item_path = c10::str(qualified(key), "[", i, "]");
    const int64_t item_line = yaml_line(item);
    if (!item.IsMap()) {
      throw Error("expected a mapping, got a " + yaml_type_name(item), ErrorContext{source_, item_path, item_line});
    }
    out.emplace_back(item, source_, item_path, item_line);
  }
  return out;
}

std::vector<std::string> YamlFields::unread() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (!e.read) out.push_back(e.key);
  }
  return out;
}

void YamlFields::reject_unknown(const std::vector<std::string>& valid) const {
  std::vector<const Entry*> unknown;
  for (const auto& e : entries_) {
    bool known = false;
    for (const auto& v : valid) known = known || v == e.key;
    if (!known) unknown.push_back(&e);
  }
  if (unknown.empty()) return;
  const auto describe = [&](const Entry& e) {
    const std::string hint = nearest(e.key, valid);
    return hint.empty() ? std::string() : " (did you mean '" + hint + "'?)";
  };
  std::string message = "unknown key" + describe(*unknown.front());
  if (unknown.size() > 1) {
    std::vector<std::string> others;
    for (size_t i = 1; i < unknown.size(); ++i) {
      others.push_back(c10::str("'", qualified(unknown[i]->key), "' on line ", unknown[i]->line,
                                describe(*unknown[i])));
    }
    message += "; also unknown: " + join(others);
  }
  message += "; valid keys: " + join(valid);
  throw Error(message, ErrorContext{source_, qualified(unknown.front()->key), unknown.front()->line});
}

}  // namespace ranktune::io
