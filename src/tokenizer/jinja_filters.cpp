// The filters and tests a template can apply (jinja2's builtins, with transformers' tojson).
#include "jinja_builtins.h"

#include "jinja_lexer.h"
#include "ranktune/core/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>

namespace ranktune::tokenizer::jinja {

// ---- tables of filters and tests ---------------------------------------------------------------

namespace {

// The function registered under `name` or its alias; an error naming the construct otherwise.
template <class Table>
typename Table::mapped_type find_builtin(const Table& table, const std::map<std::string, std::string>& aliases,
                                         const std::string& name, const char* kind) {
  const auto alias = aliases.find(name);
  const auto found = table.find(alias == aliases.end() ? name : alias->second);
  if (found == table.end()) throw Error(std::string("the Jinja ") + kind + " '" + name + "' is not supported");
  return found->second;
}

template <class Table>
std::vector<std::string> builtin_names(const Table& table, const std::map<std::string, std::string>& aliases) {
  std::vector<std::string> out;
  for (const auto& entry : table) out.push_back(entry.first);
  for (const auto& entry : aliases) out.push_back(entry.first);
  return out;
}

}  // namespace

// ---- tests ----------------------------------------------------------------------------------------

namespace {

using TestFn = bool (*)(const Value&, ArgReader&);

Value one_argument(ArgReader& r) { return r.next("other"); }

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = {
      {"defined", [](const Value& v, ArgReader&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, ArgReader&) { return v.is_undefined(); }},
      {"none", [](const Value& v, ArgReader&) { return v.is_none(); }},
      {"boolean", [](const Value& v, ArgReader&) { return v.kind() == Value::Kind::boolean; }},
      {"true", [](const Value& v, ArgReader&) { return v.kind() == Value::Kind::boolean && v.as_bool(); }},
      {"false", [](const Value& v, ArgReader&) { return v.kind() == Value::Kind::boolean && !v.as_bool(); }},
      {"integer", [](const Value& v, ArgReader&) { return v.kind() == Value::Kind::integer; }},
      {"float", [](const Value& v, ArgReader&) { return v.kind() == Value::Kind::floating; }},
      {"number", [](const Value& v, ArgReader&) { return v.is_number(); }},
      {"string", [](const Value& v, ArgReader&) { return v.is_string(); }},
      {"mapping", [](const Value& v, ArgReader&) { return v.is_dict() && !v.is_namespace(); }},
      {"iterable", [](const Value& v, ArgReader&) { return v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()); }},
      {"sequence", [](const Value& v, ArgReader&) { return v.is_undefined() || v.is_string() || (v.is_list() && !v.is_generator()) || (v.is_dict() && !v.is_namespace()); }},
      {"callable", [](const Value& v, ArgReader&) { return v.is_callable(); }},
      {"lower", [](const Value& v, ArgReader&) { return v.is_string() && map_case(v.as_string(), to_lower) == v.as_string(); }},
      {"upper", [](const Value& v, ArgReader&) { return v.is_string() && map_case(v.as_string(), to_upper) == v.as_string(); }},
      {"odd", [](const Value& v, ArgReader&) { return checked_int(v, "odd: values") % 2 != 0; }},
      {"even", [](const Value& v, ArgReader&) { return checked_int(v, "even: values") % 2 == 0; }},
      {"divisibleby", [](const Value& v, ArgReader& r) {
         const int64_t d = checked_int(r.next("num"), "divisibleby: values");
         if (d == 0) throw Error("integer division or modulo by zero");
         return checked_int(v, "divisibleby: values") % d == 0;
       }},
      {"sameas", [](const Value& v, ArgReader& r) {
         const Value o = one_argument(r);
         if (v.is_list() || v.is_dict()) return (v.is_list() ? (o.is_list() && &v.items() == &o.items()) : (o.is_dict() && &v.entries() == &o.entries()));
         return v.kind() == o.kind() && equal(v, o);
       }},
      {"eq", [](const Value& v, ArgReader& r) { return equal(v, one_argument(r)); }},
      {"ne", [](const Value& v, ArgReader& r) { return !equal(v, one_argument(r)); }},
      {"lt", [](const Value& v, ArgReader& r) { return less(v, one_argument(r)); }},
      {"le", [](const Value& v, ArgReader& r) { const Value o = one_argument(r); return !less(o, v); }},
      {"gt", [](const Value& v, ArgReader& r) { return less(one_argument(r), v); }},
      {"ge", [](const Value& v, ArgReader& r) { return !less(v, one_argument(r)); }},
      {"in", [](const Value& v, ArgReader& r) { return contains(r.next("seq"), v); }},
  };
  return table;
}

const std::map<std::string, std::string>& test_aliases() {
  static const std::map<std::string, std::string> aliases = {
      {"==", "eq"}, {"equalto", "eq"}, {"!=", "ne"}, {"<", "lt"}, {"lessthan", "lt"}, {"<=", "le"},
      {">", "gt"},  {"greaterthan", "gt"}, {">=", "ge"}};
  return aliases;
}

}  // namespace

bool apply_test(const std::string& name, const Value& input, Args& args) {
  ArgReader reader(args, name);
  const bool result = find_builtin(tests(), test_aliases(), name, "test")(input, reader);
  reader.done();
  return result;
}

const std::vector<std::string>& supported_tests() {
  static const std::vector<std::string> names = builtin_names(tests(), test_aliases());
  return names;
}

// ---- filters --------------------------------------------------------------------------------------

namespace {

using FilterFn = Value (*)(const Value&, ArgReader&);

// An attribute path "a.b" or an index, as jinja2's make_attrgetter reads items.
Value lookup_path(const Value& item, const Value& path) {
  if (!path.is_string()) return get_item(item, path);
  Value current = item;
  const List parts = split(path.as_string(), Value::string("."), -1);
  for (const Value& part : parts) {
    const std::string& p = part.as_string();
    const bool numeric = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
    current = get_item(current, numeric && p.size() < 19 ? Value::integer(std::strtoll(p.c_str(), nullptr, 10)) : part);
  }
  return current;
}

// select/reject/selectattr/rejectattr: keep the items whose test result (or truth) equals `keep`.
Value select_items(const Value& input, ArgReader& r, bool by_attribute, bool keep) {
  const Value attribute = by_attribute ? r.next("attribute") : Value();
  std::vector<Value> rest = r.rest();
  Args test_args;
  std::string test_name;
  if (!rest.empty()) {
    if (!rest[0].is_string()) throw Error("the test name must be a string, not " + py_type(rest[0]));
    test_name = rest[0].as_string();
    test_args.positional.assign(rest.begin() + 1, rest.end());
  }
  r.done();
  List out;
  if (!input.truthy()) return Value::generator({});  // jinja2: `if seq:` before iterating (None gives nothing)
  for (const Value& item : input.iterate()) {
    const Value subject = by_attribute ? lookup_path(item, attribute) : item;
    Args args = test_args;
    const bool result = test_name.empty() ? subject.truthy() : apply_test(test_name, subject, args);
    if (result == keep) out.push_back(item);
  }
  return Value::generator(std::move(out));
}

// Python's int(float) for the values a 64-bit integer holds; beyond them an error.
int64_t float_to_int(double d) {
  if (!(d > -9223372036854775808.0 && d < 9223372036854775807.0)) {
    throw Error("integer overflow (ranktune's template integers are 64-bit)");
  }
  return static_cast<int64_t>(d);
}

Value to_int(const Value& v, const Value& fallback, int64_t base) {
  if (base != 0 && (base < 2 || base > 36)) throw Error("int() base must be >= 2 and <= 36, or 0");
  if (v.kind() == Value::Kind::integer || v.kind() == Value::Kind::boolean) return Value::integer(v.as_int());
  if (v.kind() == Value::Kind::floating) {
    if (!std::isfinite(v.as_double())) return fallback;
    return Value::integer(float_to_int(v.as_double()));
  }
  if (v.is_string()) {
    std::string s = python_strip(v.as_string(), StripSide::both);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (!s.empty()) {
      char* end = nullptr;
      errno = 0;
      const long long i = std::strtoll(s.c_str(), &end, static_cast<int>(base));
      if (*end == '\0' && errno == 0) return Value::integer(i);
      const double d = std::strtod(s.c_str(), &end);
      if (*end == '\0' && std::isfinite(d)) return Value::integer(float_to_int(d));
    }
  }
  return fallback;
}

Value to_float(const Value& v, const Value& fallback) {
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) {
    const std::string s = python_strip(v.as_string(), StripSide::both);
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value::floating(d);
  }
  return fallback;
}


std::string indent(const std::string& s, const Value& width, bool first, bool blank) {
  const std::string pad = width.is_string() ? width.as_string() : std::string(bounded_width(width, "indent: width"), ' ');
  std::vector<std::string> lines;
  size_t pos = 0;
  const std::string text = s + "\n";
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  std::string out = lines.empty() ? "" : lines[0];
  for (size_t i = 1; i < lines.size(); ++i) out += "\n" + ((blank || !lines[i].empty()) ? pad + lines[i] : lines[i]);
  return first ? pad + out : out;
}

Value sort_items(const Value& input, bool reverse, bool case_sensitive, const Value& attribute) {
  List items = input.iterate();
  auto key = [&](const Value& v) {
    Value k = attribute.is_none() ? v : lookup_path(v, attribute);
    if (!case_sensitive && k.is_string()) k = Value::string(map_case(k.as_string(), to_lower));
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? less(key(b), key(a)) : less(key(a), key(b));
  });
  return Value::list(std::move(items));
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs", [](const Value& v, ArgReader&) {
         if (v.kind() == Value::Kind::floating) return Value::floating(std::fabs(v.as_double()));
         if (!v.is_number()) throw Error("bad operand type for abs(): '" + py_type(v) + "'");
         if (v.as_int() == INT64_MIN) throw Error("integer overflow (ranktune's template integers are 64-bit)");
         return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
       }},
      {"capitalize", [](const Value& v, ArgReader&) { return Value::string(capitalize(v.str())); }},
      {"default", [](const Value& v, ArgReader& r) {
         const Value fallback = r.next("default_value", Value::string(""));
         const bool boolean = r.next("boolean", Value::boolean(false)).truthy();
         return (v.is_undefined() || (boolean && !v.truthy())) ? fallback : v;
       }},
      {"escape", [](const Value& v, ArgReader&) { return Value::markup(escaped(v)); }},
      {"first", [](const Value& v, ArgReader&) {
         const List items = v.iterate();
         return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
       }},
      {"float", [](const Value& v, ArgReader& r) { return to_float(v, r.next("default", Value::floating(0))); }},
      {"indent", [](const Value& v, ArgReader& r) {
         const Value width = r.next("width", Value::integer(4));
         const bool first = r.next("first", Value::boolean(false)).truthy();
         const bool blank = r.next("blank", Value::boolean(false)).truthy();
         return Value::string(indent(v.str(), width, first, blank));
       }},
      {"int", [](const Value& v, ArgReader& r) {
         const Value fallback = r.next("default", Value::integer(0));
         return to_int(v, fallback, r.next("base", Value::integer(10)).as_int());
       }},
      {"items", [](const Value& v, ArgReader&) {
         if (v.is_undefined()) return Value::generator({});
         if (!v.is_dict() || v.is_namespace()) throw Error("Can only get item pairs from a mapping.");
         return Value::generator(items_of(v).items());
       }},
      {"join", [](const Value& v, ArgReader& r) {
         const std::string separator = r.next("d", Value::string("")).str();
         const Value attribute = r.next("attribute", Value::none());
         std::string out;
         bool first = true;
         for (const Value& item : v.iterate()) {
           if (!first) out += separator;
           out += (attribute.is_none() ? item : lookup_path(item, attribute)).str();
           first = false;
           if (out.size() > kMaxSize) throw Error("join: the result is too large");
         }
         return Value::string(out);
       }},
      {"last", [](const Value& v, ArgReader&) {
         if (v.is_dict() || v.is_generator()) throw Error("'" + py_type(v) + "' object is not reversible");
         const List items = v.iterate();
         return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
       }},
      {"length", [](const Value& v, ArgReader&) { return Value::integer(length(v)); }},
      {"list", [](const Value& v, ArgReader&) { return Value::list(v.iterate()); }},
      {"lower", [](const Value& v, ArgReader&) { return Value::string(map_case(v.str(), to_lower)); }},
      {"map", [](const Value& v, ArgReader& r) {
         // map(attribute='x') or map('filter', args...): the attribute is only ever a keyword.
         const bool by_attribute = std::any_of(r.keywords().begin(), r.keywords().end(), [](const auto& kv) { return kv.first == "attribute"; });
         List out;
         if (!v.truthy()) {  // jinja2: `if value:` before iterating (None gives nothing)
           r.rest();
           return Value::generator({});
         }
         if (by_attribute) {
           const Value attribute = r.next("attribute");
           const Value fallback = r.next("default", Value());
           r.done();
           for (const Value& item : v.iterate()) {
             Value x = lookup_path(item, attribute);
             out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
           }
           return Value::generator(std::move(out));
         }
         std::vector<Value> rest = r.rest();
         if (rest.empty() || !rest[0].is_string()) throw Error("map: give a filter name or attribute=");
         Args filter_args;
         filter_args.positional.assign(rest.begin() + 1, rest.end());
         r.done();
         for (const Value& item : v.iterate()) {
           Args args = filter_args;
           out.push_back(apply_filter(rest[0].as_string(), item, args));
         }
         return Value::generator(std::move(out));
       }},
      {"reject", [](const Value& v, ArgReader& r) { return select_items(v, r, false, false); }},
      {"rejectattr", [](const Value& v, ArgReader& r) { return select_items(v, r, true, false); }},
      {"replace", [](const Value& v, ArgReader& r) {
         const std::string from = r.next("old").str();
         const std::string to = r.next("new").str();
         const Value count = r.next("count", Value::none());
         return Value::string(replace(v.str(), from, to, count.is_none() ? -1 : count.as_int()));
       }},
      {"reverse", [](const Value& v, ArgReader&) {
         if (v.is_string()) {
           std::u32string cps = to_code_points(v.as_string());
           std::reverse(cps.begin(), cps.end());
           return Value::string(to_utf8(cps));
         }
         if (v.is_generator()) throw Error("'generator' object is not reversible");
         List items = v.iterate();
         std::reverse(items.begin(), items.end());
         return Value::generator(std::move(items));
       }},
      {"round", [](const Value& v, ArgReader& r) {
         const int64_t precision = r.next("precision", Value::integer(0)).as_int();
         const std::string how = r.next("method", Value::string("common")).str();
         const double scale = std::pow(10.0, static_cast<double>(precision));
         const double x = v.as_double() * scale;
         // Python's round() (jinja2's "common") rounds halves to even, as nearbyint does by default.
         const double rounded = how == "floor" ? std::floor(x) : how == "ceil" ? std::ceil(x) : std::nearbyint(x);
         return Value::floating(rounded / scale);
       }},
      {"safe", [](const Value& v, ArgReader&) { return v.is_markup() ? v : Value::markup(v.str()); }},
      {"select", [](const Value& v, ArgReader& r) { return select_items(v, r, false, true); }},
      {"selectattr", [](const Value& v, ArgReader& r) { return select_items(v, r, true, true); }},
      {"sort", [](const Value& v, ArgReader& r) {
         const bool reverse = r.next("reverse", Value::boolean(false)).truthy();
         const bool case_sensitive = r.next("case_sensitive", Value::boolean(false)).truthy();
         return sort_items(v, reverse, case_sensitive, r.next("attribute", Value::none()));
       }},
      {"string", [](const Value& v, ArgReader&) { return Value::string(v.str()); }},
      {"sum", [](const Value& v, ArgReader& r) {
         const Value attribute = r.next("attribute", Value::none());
         Value total = r.next("start", Value::integer(0));
         for (const Value& item : v.iterate()) total = binary_operator("+", total, attribute.is_none() ? item : lookup_path(item, attribute));
         return total;
       }},
      {"title", [](const Value& v, ArgReader&) { return Value::string(jinja_title(v.str())); }},
      {"tojson", [](const Value& v, ArgReader& r) {
         // transformers' override: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
         JsonStyle style;
         style.ensure_ascii = r.next("ensure_ascii", Value::boolean(false)).truthy();
         const Value indent_value = r.next("indent", Value::none());
         const Value separators = r.next("separators", Value::none());
         style.sort_keys = r.next("sort_keys", Value::boolean(false)).truthy();
         if (indent_value.is_string()) {
           style.indent = true;
           style.indent_text = indent_value.as_string();
         } else if (!indent_value.is_none()) {
           style.indent = true;
           style.indent_text = std::string(bounded_width(indent_value, "tojson: indent"), ' ');
         }
         if (!separators.is_none()) {
           if (!separators.is_list() || separators.items().size() != 2 || !separators.items()[0].is_string() || !separators.items()[1].is_string()) {
             throw Error("tojson: separators must be a pair of strings");
           }
           style.item_separator = separators.items()[0].as_string();
           style.key_separator = separators.items()[1].as_string();
         }
         return Value::string(to_json(v, style));
       }},
      {"trim", [](const Value& v, ArgReader& r) {
         const Value chars = r.next("chars", Value::none());
         if (chars.is_none()) return Value::string(python_strip(v.str(), StripSide::both));
         const std::string set = chars.str();
         return Value::string(python_strip(v.str(), StripSide::both, &set));
       }},
      {"unique", [](const Value& v, ArgReader&) {
         List out;
         for (const Value& item : v.iterate()) {
           if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return equal(o, item); })) out.push_back(item);
         }
         return Value::generator(std::move(out));
       }},
      {"upper", [](const Value& v, ArgReader&) { return Value::string(map_case(v.str(), to_upper)); }},
      {"wordcount", [](const Value& v, ArgReader&) { return Value::integer(static_cast<int64_t>(split(v.str(), Value::none(), -1).size())); }},
  };
  return table;
}

const std::map<std::string, std::string>& filter_aliases() {
  static const std::map<std::string, std::string> aliases = {{"d", "default"}, {"e", "escape"}, {"count", "length"}};
  return aliases;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& input, Args& args) {
  ArgReader reader(args, name);
  Value result = find_builtin(filters(), filter_aliases(), name, "filter")(input, reader);
  reader.done();
  return result;
}

const std::vector<std::string>& supported_filters() {
  static const std::vector<std::string> names = builtin_names(filters(), filter_aliases());
  return names;
}

}  // namespace ranktune::tokenizer::jinja
