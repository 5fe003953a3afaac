#pragma once
// The values a Jinja chat template computes with, with Python's semantics (jinja2 evaluates
// templates as Python): none, bools, ints, floats, strings (UTF-8; lengths and indices count code
// points, as Python's str), lists (and tuples), insertion-ordered dicts, namespaces (dicts whose
// attributes a template may assign), callables (globals, filters' bound methods, macros), and
// jinja2's default Undefined (prints empty, is false, iterates as empty; any other use fails with
// jinja2's message, e.g. "'dict object' has no attribute 'tool_calls'").

#include "ranktune/io/json.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::tokenizer::jinja {

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<Value, Value>>;  // insertion order; small, searched linearly

// Arguments of a call: positional, then keyword (in call order).
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using Function = std::function<Value(Args&)>;

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, callable };

  Value() = default;  // undefined
  static Value undefined(std::string message) {
    Value v;
    v.text_ = std::move(message);
    return v;
  }
  static Value none() { return Value(Kind::none); }
  static Value boolean(bool b) {
    Value v(Kind::boolean);
    v.int_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v(Kind::integer);
    v.int_ = i;
    return v;
  }
  static Value floating(double f) {
    Value v(Kind::floating);
    v.float_ = f;
    return v;
  }
  static Value string(std::string s) {
    Value v(Kind::string);
    v.text_ = std::move(s);
    return v;
  }
  // markupsafe's Markup: text marked safe (the `safe` and `escape` filters); `+` with plain text
  // HTML-escapes the plain side, as Python's Markup.__add__ does (`~` does not: autoescape is off).
  static Value markup(std::string s) {
    Value v = string(std::move(s));
    v.flag_ = 1;
    return v;
  }
  static Value list(List items, bool tuple = false) {
    Value v(Kind::list);
    v.list_ = std::make_shared<List>(std::move(items));
    v.flag_ = tuple ? 1 : 0;
    return v;
  }
  // What jinja2's select/reject/map/items/reverse filters return: iterable once, true, with no
  // len() and no JSON form (a template must add `| list`).
  static Value generator(List items) {
    Value v = list(std::move(items));
    v.flag_ = 2;
    return v;
  }
  static Value dict(Dict items = {}, bool is_namespace = false) {
    Value v(Kind::dict);
    v.dict_ = std::make_shared<Dict>(std::move(items));
    v.flag_ = is_namespace ? 1 : 0;
    return v;
  }
  static Value callable(std::string name, Function fn) {
    Value v(Kind::callable);
    v.text_ = std::move(name);
    v.fn_ = std::make_shared<Function>(std::move(fn));
    return v;
  }
  // From JSON (objects keep their order): what a caller passes as messages, tools, kwargs.
  static Value from_json(const io::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_list() const { return kind_ == Kind::list; }
  bool is_tuple() const { return kind_ == Kind::list && flag_ == 1; }
  bool is_generator() const { return kind_ == Kind::list && flag_ == 2; }
  bool is_markup() const { return kind_ == Kind::string && flag_ == 1; }
  bool is_dict() const { return kind_ == Kind::dict; }
  bool is_namespace() const { return kind_ == Kind::dict && flag_; }
  bool is_callable() const { return kind_ == Kind::callable; }
  // Python numbers: bool, int, float.
  bool is_number() const { return kind_ == Kind::boolean || kind_ == Kind::integer || kind_ == Kind::floating; }

  bool as_bool() const { return int_ != 0; }
  // A float is truncated, saturating at the int64 range (nan: 0): never undefined behaviour.
  int64_t as_int() const { return kind_ == Kind::floating ? saturating_int(float_) : int_; }
  static int64_t saturating_int(double f) {
    if (!(f == f)) return 0;
    if (f >= 9223372036854775807.0) return INT64_MAX;
    if (f <= -9223372036854775808.0) return INT64_MIN;
    return static_cast<int64_t>(f);
  }
  double as_double() const { return kind_ == Kind::floating ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return text_; }
  const List& items() const { return *list_; }
  const Dict& entries() const { return *dict_; }
  Dict& mutable_entries() const { return *dict_; }  // namespaces only: `set ns.x = ...`
  // The callable's name, or an undefined's message.
  const std::string& name() const { return text_; }
  Value call(Args& args) const { return (*fn_)(args); }

  // Python's bool(), str() and repr().
  bool truthy() const;
  std::string str() const;
  std::string repr() const;
  // jinja2's name of the type in messages: "dict object", "str object", "None", ...
  std::string type_name() const;
  // Throws the undefined's error (jinja2's UndefinedError) when this is undefined.
  const Value& require_defined() const;

  // Dict lookup by key (Python equality); nullptr when absent.
  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;

  // Items when iterated as in Python: list items, dict keys, string characters; undefined is
  // empty. Anything else: an error naming the type.
  List iterate() const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}

  Kind kind_ = Kind::undefined;
  uint8_t flag_ = 0;  // list: 1 tuple, 2 generator; dict: 1 namespace; string: 1 markup
  int64_t int_ = 0;
  double float_ = 0;
  std::string text_;  // string, callable name, undefined message
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

// Python's ==: 1 == 1.0 == True, deep for lists and dicts (dict order does not matter).
bool equal(const Value& a, const Value& b);
// Python's <; an error for types Python cannot order ("'<' not supported between ...").
bool less(const Value& a, const Value& b);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys), as transformers' tojson filter.
// indent < 0 means None; an indent string (Python accepts one) is given as `indent_text`.
struct JsonStyle {
  bool ensure_ascii = false;
  bool indent = false;
  std::string indent_text;
  bool sort_keys = false;
  std::optional<std::string> item_separator, key_separator;  // absent: Python's defaults for the indent
};
std::string to_json(const Value& value, const JsonStyle& style);

// Python's repr() of a float ("22.5", "100.0", "1e-05", "inf").
std::string python_float_repr(double value);

// Strings as code points (Python indexing and slicing) and back.
std::u32string to_code_points(const std::string& utf8);
std::string to_utf8(const std::u32string& code_points);
// Python's str.isspace() for one code point.
bool is_python_space(char32_t c);

}  // namespace ranktune::tokenizer::jinja
