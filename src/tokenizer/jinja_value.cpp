#include "jinja_value.h"

#include "ranktune/core/error.h"
#include "utf8.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ranktune::tokenizer::jinja {

std::u32string to_code_points(const std::string& utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  size_t pos = 0;
  while (pos < utf8.size()) out.push_back(next_code_point(utf8, pos));
  return out;
}

std::string to_utf8(const std::u32string& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append_utf8(out, c);
  return out;
}

bool is_python_space(char32_t c) { return is_unicode_whitespace(c) || (c >= 0x1c && c <= 0x1f); }

Value Value::from_json(const io::ordered_json& json) {
  switch (json.type()) {
    case io::ordered_json::value_t::null: return none();
    case io::ordered_json::value_t::boolean: return boolean(json.get<bool>());
    case io::ordered_json::value_t::number_integer: return integer(json.get<int64_t>());
    case io::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return floating(static_cast<double>(u));
      return integer(static_cast<int64_t>(u));
    }
    case io::ordered_json::value_t::number_float: return floating(json.get<double>());
    case io::ordered_json::value_t::string: return string(json.get<std::string>());
    case io::ordered_json::value_t::array: {
      List items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(from_json(item));
      return list(std::move(items));
    }
    case io::ordered_json::value_t::object: {
      Dict entries;
      entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) entries.emplace_back(string(key), from_json(item));
      return dict(std::move(entries));
    }
    default: throw Error("unsupported JSON value " + json.dump());
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean:
    case Kind::integer: return int_ != 0;
    case Kind::floating: return float_ != 0;
    case Kind::string: return !text_.empty();
    case Kind::list: return is_generator() || !list_->empty();
    case Kind::dict: return is_namespace() || !dict_->empty();
    case Kind::callable: return true;
  }
  return false;
}

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // The shortest digits that read back as the same double (Python's repr), then Python's layout:
  // exponent notation below 1e-4 and from 1e16 on, else positional with at least one decimal.
  char buffer[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*e", precision - 1, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  std::string text(buffer);
  const size_t e = text.find('e');
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string digits;
  bool negative = text[0] == '-';
  for (size_t i = negative ? 1 : 0; i < e; ++i) {
    if (text[i] != '.') digits += text[i];
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  const size_t integer_digits = static_cast<size_t>(exponent) + 1;
  if (digits.size() <= integer_digits) return out + digits + std::string(integer_digits - digits.size(), '0') + ".0";
  return out + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
}

namespace {

bool printable_in_repr(char32_t c) {
  // Python's str.isprintable() for the ranges real text meets: controls, Latin-1's non-breaking
  // space and soft hyphen, and the Unicode separators and format characters are not printable.
  if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return false;
  if ((c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x206f)) return false;
  if (c == 0x1680 || c == 0x3000 || c == 0xfeff) return false;
  return true;
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const char32_t c = next_code_point(s, pos);
    char buffer[16];
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!printable_in_repr(c)) {
      if (c < 0x100) {
        std::snprintf(buffer, sizeof(buffer), "\\x%02x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
      }
      out += buffer;
    } else {
      out.append(s, start, pos - start);
    }
  }
  return out + quote;
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case Kind::undefined: return "";
    case Kind::string: return text_;
    default: return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "None";
    case Kind::boolean: return int_ ? "True" : "False";
    case Kind::integer: return std::to_string(int_);
    case Kind::floating: return python_float_repr(float_);
    case Kind::string: return string_repr(text_);
    case Kind::list: {
      if (is_generator()) return "<generator object>";
      std::string out = is_tuple() ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      if (is_tuple() && list_->size() == 1) out += ",";
      return out + (is_tuple() ? ")" : "]");
    }
    case Kind::dict: {
      std::string out = is_namespace() ? "<Namespace {" : "{";
      for (size_t i = 0; i < dict_->size(); ++i) {
        out += (i ? ", " : "") + (*dict_)[i].first.repr() + ": " + (*dict_)[i].second.repr();
      }
      return out + (is_namespace() ? "}>" : "}");
    }
    case Kind::callable: return "<function " + text_ + ">";
  }
  return "";
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "None";
    case Kind::boolean: return "bool object";
    case Kind::integer: return "int object";
    case Kind::floating: return "float object";
    case Kind::string: return "str object";
    case Kind::list: return is_generator() ? "generator object" : is_tuple() ? "tuple object" : "list object";
    case Kind::dict: return is_namespace() ? "Namespace object" : "dict object";
    case Kind::callable: return "function object";
  }
  return "object";
}

const Value& Value::require_defined() const {
  if (kind_ == Kind::undefined) throw Error(text_.empty() ? "value is undefined" : text_);
  return *this;
}

const Value* Value::find(const Value& key) const {
  for (const auto& [k, v] : *dict_) {
    if (equal(k, key)) return &v;
  }
  return nullptr;
}

const Value* Value::find(const std::string& key) const {
  for (const auto& [k, v] : *dict_) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

List Value::iterate() const {
  switch (kind_) {
    case Kind::undefined: return {};
    case Kind::list: return *list_;
    case Kind::dict: {
      List keys;
      for (const auto& entry : *dict_) keys.push_back(entry.first);
      return keys;
    }
    case Kind::string: {
      List chars;
      size_t pos = 0;
      while (pos < text_.size()) {
        const size_t start = pos;
        next_code_point(text_, pos);
        chars.push_back(string(text_.substr(start, pos - start)));
      }
      return chars;
    }
    default: throw Error("'" + (kind_ == Kind::none ? std::string("NoneType") : type_name().substr(0, type_name().find(' '))) + "' object is not iterable");
  }
}

bool equal(const Value& a, const Value& b) {
  using Kind = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::floating || b.kind() == Kind::floating) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::undefined:
    case Kind::none: return true;
    case Kind::string: return a.as_string() == b.as_string();
    case Kind::list: {
      if (a.is_generator() || b.is_generator()) return &a.items() == &b.items();
      if (a.is_tuple() != b.is_tuple() || a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i) {
        if (!equal(a.items()[i], b.items()[i])) return false;
      }
      return true;
    }
    case Kind::dict: {
      if (a.is_namespace() || b.is_namespace()) return &a.entries() == &b.entries();
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [key, value] : a.entries()) {
        const Value* other = b.find(key);
        if (other == nullptr || !equal(value, *other)) return false;
      }
      return true;
    }
    case Kind::callable: return a.name() == b.name();
    default: return false;
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double();
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order is code point order
  if (a.is_list() && b.is_list()) {
    const List& x = a.items();
    const List& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equal(x[i], y[i])) return less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  a.require_defined();
  b.require_defined();
  throw Error("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const char32_t c = next_code_point(s, pos);
    char buffer[16];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            std::snprintf(buffer, sizeof(buffer), "\\u%04x\\u%04x", static_cast<unsigned>(0xd800 + (v >> 10)),
                          static_cast<unsigned>(0xdc00 + (v & 0x3ff)));
          } else {
            std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
          }
          out += buffer;
        } else {
          out.append(s, start, pos - start);
        }
    }
  }
  out += '"';
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return python_float_repr(f);
}

// A dict key as json.dumps writes it: strings as they are, numbers, bools and None as text.
std::string json_key(const Value& key) {
  using Kind = Value::Kind;
  switch (key.kind()) {
    case Kind::string: return key.as_string();
    case Kind::boolean: return key.as_bool() ? "true" : "false";
    case Kind::integer: return std::to_string(key.as_int());
    case Kind::floating: return json_float(key.as_double());
    case Kind::none: return "null";
    default: throw Error("keys must be str, int, float, bool or None, not " + key.type_name());
  }
}

void write_json(std::string& out, const Value& value, const JsonStyle& style, int depth) {
  using Kind = Value::Kind;
  const std::string item_sep = style.item_separator ? *style.item_separator : (style.indent ? "," : ", ");
  const std::string key_sep = style.key_separator ? *style.key_separator : ": ";
  auto newline = [&](int level) {
    if (!style.indent) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += style.indent_text;
  };
  if (depth > 512) throw Error("tojson: value nested too deeply");
  switch (value.kind()) {
    case Kind::none: out += "null"; return;
    case Kind::boolean: out += value.as_bool() ? "true" : "false"; return;
    case Kind::integer: out += std::to_string(value.as_int()); return;
    case Kind::floating: out += json_float(value.as_double()); return;
    case Kind::string: json_string(out, value.as_string(), style.ensure_ascii); return;
    case Kind::list: {
      if (value.is_generator()) break;
      if (value.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < value.items().size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        write_json(out, value.items()[i], style, depth + 1);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Kind::dict: {
      if (value.is_namespace()) break;
      if (value.entries().empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [key, item] : value.entries()) entries.emplace_back(json_key(key), &item);
      if (style.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        newline(depth + 1);
        json_string(out, entries[i].first, style.ensure_ascii);
        out += key_sep;
        write_json(out, *entries[i].second, style, depth + 1);
      }
      newline(depth);
      out += '}';
      return;
    }
    default: break;
  }
  const std::string type = value.is_undefined() ? "Undefined" : value.type_name().substr(0, value.type_name().find(' '));
  throw Error("Object of type " + type + " is not JSON serializable");
}

}  // namespace

std::string to_json(const Value& value, const JsonStyle& style) {
  std::string out;
  write_json(out, value, style, 0);
  return out;
}

}  // namespace ranktune::tokenizer::jinja
