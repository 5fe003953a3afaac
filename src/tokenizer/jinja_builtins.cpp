#include "jinja_builtins.h"

#include "jinja_lexer.h"
#include "ranktune/core/error.h"
#include "utf8.h"

#include <algorithm>
#include <clocale>
#include <cmath>
#include <ctime>
#include <cwctype>
#include <locale.h>
#include <map>
#include <set>

namespace ranktune::tokenizer::jinja {


// Python's name of a value's type, for TypeError-style messages.
std::string py_type(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::none: return "NoneType";
    case Value::Kind::boolean: return "bool";
    case Value::Kind::integer: return "int";
    case Value::Kind::floating: return "float";
    case Value::Kind::string: return "str";
    case Value::Kind::list: return v.is_generator() ? "generator" : v.is_tuple() ? "tuple" : "list";
    case Value::Kind::dict: return v.is_namespace() ? "Namespace" : "dict";
    case Value::Kind::callable: return "function";
    default: return "Undefined";
  }
}

// ---- case mapping (the C library's Unicode tables; ASCII when no UTF-8 locale exists) ---------
static locale_t utf8_locale() {
  static locale_t locale = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    if (l == static_cast<locale_t>(nullptr)) l = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", static_cast<locale_t>(nullptr));
    return l;
  }();
  return locale;
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  const locale_t l = utf8_locale();
  return l ? static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), l)) : c;
}
char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  const locale_t l = utf8_locale();
  return l ? static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), l)) : c;
}
bool is_cased(char32_t c) { return to_upper(c) != c || to_lower(c) != c; }

std::string map_case(const std::string& s, char32_t (*f)(char32_t)) {
  std::u32string cps = to_code_points(s);
  for (char32_t& c : cps) c = f(c);
  return to_utf8(cps);
}

// Python's str.title(): a cased character after an uncased one starts a word.
static std::string python_title(const std::string& s) {
  std::u32string cps = to_code_points(s);
  bool previous_cased = false;
  for (char32_t& c : cps) {
    c = previous_cased ? to_lower(c) : to_upper(c);
    previous_cased = is_cased(c);
  }
  return to_utf8(cps);
}

// jinja2's title filter: words start after '-', whitespace or an opening bracket.
std::string jinja_title(const std::string& s) {
  std::u32string cps = to_code_points(s);
  bool start = true;
  for (char32_t& c : cps) {
    const bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
    if (separator) {
      start = true;
    } else {
      c = start ? to_upper(c) : to_lower(c);
      start = false;
    }
  }
  return to_utf8(cps);
}

std::string capitalize(const std::string& s) {
  std::u32string cps = to_code_points(s);
  for (size_t i = 0; i < cps.size(); ++i) cps[i] = i == 0 ? to_upper(cps[i]) : to_lower(cps[i]);
  return to_utf8(cps);
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every character and at the end.
    std::u32string cps = to_code_points(s);
    int64_t done = 0;
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++done;
    if (out.size() > kMaxSize) throw Error("replace: the result is too large");
  }
  return out + s.substr(pos);
}

List split(const std::string& s, const Value& separator, int64_t max_split) {
  List parts;
  if (separator.is_none() || separator.is_undefined()) {
    size_t pos = 0;
    while (true) {
      while (pos < s.size()) {
        size_t next = pos;
        if (!is_python_space(next_code_point(s, next))) break;
        pos = next;
      }
      if (pos >= s.size()) break;
      if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
        parts.push_back(Value::string(s.substr(pos)));
        break;
      }
      size_t end = pos;
      while (end < s.size()) {
        size_t next = end;
        if (is_python_space(next_code_point(s, next))) break;
        end = next;
      }
      parts.push_back(Value::string(s.substr(pos, end - pos)));
      pos = end;
    }
    return parts;
  }
  if (!separator.is_string()) throw Error("must be str or None, not " + py_type(separator));
  const std::string& sep = separator.as_string();
  if (sep.empty()) throw Error("empty separator");
  size_t pos = 0;
  while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
    const size_t hit = s.find(sep, pos);
    if (hit == std::string::npos) break;
    parts.push_back(Value::string(s.substr(pos, hit - pos)));
    pos = hit + sep.size();
  }
  parts.push_back(Value::string(s.substr(pos)));
  return parts;
}

// str.startswith/endswith: a string or a tuple (list) of strings.
static bool affix_matches(const std::string& s, const Value& affix, bool prefix) {
  if (affix.is_list()) {
    for (const Value& a : affix.items()) {
      if (affix_matches(s, a, prefix)) return true;
    }
    return false;
  }
  if (!affix.is_string()) throw Error(std::string(prefix ? "startswith" : "endswith") + " first arg must be str or a tuple of str, not " + py_type(affix));
  const std::string& a = affix.as_string();
  if (a.size() > s.size()) return false;
  return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Text as it joins Markup: markup as is, anything else HTML-escaped.
std::string escaped(const Value& v) { return v.is_markup() ? v.as_string() : html_escape(v.str()); }

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return 0;
    case Value::Kind::string: return static_cast<int64_t>(to_code_points(v.as_string()).size());
    case Value::Kind::list:
      if (v.is_generator()) break;
      return static_cast<int64_t>(v.items().size());
    case Value::Kind::dict: return static_cast<int64_t>(v.entries().size());
    default: break;
  }
  throw Error("object of type '" + py_type(v) + "' has no len()");
}

static Value unsafe(const std::string& name, const Value& object) {
  return Value::undefined("access to attribute '" + name + "' of '" + py_type(object) + "' object is unsafe.");
}

static Value method(const std::string& name, Function fn) { return Value::callable(name, std::move(fn)); }

static Value string_method(const std::string& s, const std::string& name) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const StripSide side = name == "strip" ? StripSide::both : name == "lstrip" ? StripSide::left : StripSide::right;
    return method(name, [s, side, name](Args& args) {
      ArgReader r(args, name);
      const Value chars = r.next("chars", Value::none());
      r.done();
      if (chars.is_none()) return Value::string(python_strip(s, side));
      const std::string set = chars.str();
      return Value::string(python_strip(s, side, &set));
    });
  }
  if (name == "split") {
    return method(name, [s](Args& args) {
      ArgReader r(args, "split");
      const Value sep = r.next("sep", Value::none());
      const Value max_split = r.next("maxsplit", Value::integer(-1));
      r.done();
      return Value::list(split(s, sep, max_split.as_int()));
    });
  }
  if (name == "startswith" || name == "endswith") {
    return method(name, [s, name](Args& args) {
      ArgReader r(args, name);
      const Value affix = r.next("prefix");
      r.done();
      return Value::boolean(affix_matches(s, affix, name == "startswith"));
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return method(name, [s, name](Args& args) {
      ArgReader(args, name).done();
      if (name == "upper") return Value::string(map_case(s, to_upper));
      if (name == "lower") return Value::string(map_case(s, to_lower));
      if (name == "title") return Value::string(python_title(s));
      return Value::string(capitalize(s));
    });
  }
  if (name == "replace") {
    return method(name, [s](Args& args) {
      ArgReader r(args, "replace");
      const Value from = r.next("old");
      const Value to = r.next("new");
      const Value count = r.next("count", Value::integer(-1));
      r.done();
      if (!from.is_string() || !to.is_string()) throw Error("replace() arguments must be str");
      return Value::string(replace(s, from.as_string(), to.as_string(), count.as_int()));
    });
  }
  if (name == "find" || name == "count") {
    return method(name, [s, name](Args& args) {
      ArgReader r(args, name);
      const Value sub = r.next("sub");
      r.done();
      if (!sub.is_string()) throw Error("must be str, not " + py_type(sub));
      if (name == "count") {
        if (sub.as_string().empty()) return Value::integer(static_cast<int64_t>(to_code_points(s).size()) + 1);
        int64_t n = 0;
        for (size_t p = s.find(sub.as_string()); p != std::string::npos; p = s.find(sub.as_string(), p + sub.as_string().size())) ++n;
        return Value::integer(n);
      }
      const size_t hit = s.find(sub.as_string());
      return Value::integer(hit == std::string::npos ? -1 : static_cast<int64_t>(to_code_points(s.substr(0, hit)).size()));
    });
  }
  if (name == "join") {
    return method(name, [s](Args& args) {
      ArgReader r(args, "join");
      const Value items = r.next("iterable");
      r.done();
      std::string out;
      bool first = true;
      for (const Value& item : items.iterate()) {
        if (!item.is_string()) throw Error("sequence item: expected str instance, " + py_type(item) + " found");
        if (!first) out += s;
        out += item.as_string();
        first = false;
      }
      return Value::string(out);
    });
  }
  static const std::set<std::string> kOtherMethods = {
      "casefold", "center",  "encode",    "expandtabs", "format",     "format_map", "index",   "isalnum",
      "isalpha",  "isascii", "isdecimal", "isdigit",    "isidentifier", "islower",  "isnumeric", "isprintable",
      "isspace",  "istitle", "isupper",   "ljust",      "partition",  "removeprefix", "removesuffix", "rfind",
      "rindex",   "rjust",   "rpartition", "rsplit",    "splitlines", "swapcase",   "translate", "zfill"};
  if (kOtherMethods.count(name)) {
    return Value::undefined("the string method '" + name + "' is not supported by ranktune's chat template renderer");
  }
  return Value::undefined("'str object' has no attribute '" + name + "'");
}

Value items_of(const Value& dict) {
  List pairs;
  for (const auto& [key, value] : dict.entries()) pairs.push_back(Value::list({key, value}, /*tuple=*/true));
  return Value::list(std::move(pairs));
}

static Value dict_method(const Value& d, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return method(name, [d, name](Args& args) {
      ArgReader(args, name).done();
      if (name == "items") return items_of(d);
      List out;
      for (const auto& [key, value] : d.entries()) out.push_back(name == "keys" ? key : value);
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return method(name, [d](Args& args) {
      ArgReader r(args, "get");
      const Value key = r.next("key");
      const Value fallback = r.next("default", Value::none());
      r.done();
      const Value* found = d.find(key);
      return found ? *found : fallback;
    });
  }
  if (name == "copy") {
    return method(name, [d](Args& args) {
      ArgReader(args, "copy").done();
      return Value::dict(d.entries());
    });
  }
  return Value();
}

int64_t checked_int(const Value& v, const char* what) {
  if (v.kind() != Value::Kind::integer && v.kind() != Value::Kind::boolean) {
    v.require_defined();
    throw Error(std::string(what) + " must be integers, not " + py_type(v));
  }
  return v.as_int();
}

// An indentation width: negative is none, more than 4096 columns is refused.
size_t bounded_width(const Value& v, const char* what) {
  const int64_t width = checked_int(v, what);
  if (width > 4096) throw Error(std::string(what) + " of " + std::to_string(width) + " is too large");
  return static_cast<size_t>(std::max<int64_t>(0, width));
}

// ---- arguments ----------------------------------------------------------------------------------

Value ArgReader::next(const char* name, const Value* fallback) {
  if (used_keywords_.size() != args_.keyword.size()) used_keywords_.assign(args_.keyword.size(), false);
  for (size_t i = 0; i < args_.keyword.size(); ++i) {
    if (args_.keyword[i].first == name) {
      if (position_ < args_.positional.size()) {
        throw Error(function_ + "() got multiple values for argument '" + name + "'");
      }
      used_keywords_[i] = true;
      return args_.keyword[i].second;
    }
  }
  if (position_ < args_.positional.size()) return args_.positional[position_++];
  if (fallback == nullptr) throw Error(function_ + "() missing required argument '" + name + "'");
  return *fallback;
}

std::vector<Value> ArgReader::rest() {
  std::vector<Value> out(args_.positional.begin() + static_cast<std::ptrdiff_t>(std::min(position_, args_.positional.size())),
                         args_.positional.end());
  position_ = args_.positional.size();
  return out;
}

void ArgReader::done() {
  if (position_ < args_.positional.size()) {
    throw Error(function_ + "() takes " + std::to_string(position_) + " positional argument(s) but " +
                std::to_string(args_.positional.size()) + " were given");
  }
  used_keywords_.resize(args_.keyword.size(), false);
  for (size_t i = 0; i < args_.keyword.size(); ++i) {
    if (!used_keywords_[i]) throw Error(function_ + "() got an unexpected keyword argument '" + args_.keyword[i].first + "'");
  }
}

// ---- access ---------------------------------------------------------------------------------------

Value get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::undefined: object.require_defined(); break;
    case Value::Kind::dict: {
      if (!object.is_namespace()) {
        Value m = dict_method(object, name);
        if (!m.is_undefined()) return m;
        static const std::set<std::string> kMutators = {"clear", "pop", "popitem", "setdefault", "update"};
        if (kMutators.count(name)) return unsafe(name, object);
      }
      if (const Value* found = object.find(name)) return *found;
      break;
    }
    case Value::Kind::string: return string_method(object.as_string(), name);
    case Value::Kind::list: {
      static const std::set<std::string> kMutators = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
      if (kMutators.count(name) && !object.is_tuple()) return unsafe(name, object);
      if (name == "index" || name == "count") {
        return method(name, [object, name](Args& args) {
          ArgReader r(args, name);
          const Value needle = r.next("value");
          r.done();
          int64_t count = 0;
          for (size_t i = 0; i < object.items().size(); ++i) {
            if (!equal(object.items()[i], needle)) continue;
            if (name == "index") return Value::integer(static_cast<int64_t>(i));
            ++count;
          }
          if (name == "index") throw Error(needle.repr() + " is not in list");
          return Value::integer(count);
        });
      }
      break;
    }
    default: break;
  }
  const std::string type = object.is_none() ? "None" : object.type_name();
  return Value::undefined("'" + type + "' has no attribute '" + name + "'");
}

Value get_item(const Value& object, const Value& key) {
  object.require_defined();
  if (object.is_dict() && !object.is_namespace()) {
    if (const Value* found = object.find(key)) return *found;
  } else if (((object.is_list() && !object.is_generator()) || object.is_string()) &&
             (key.kind() == Value::Kind::integer || key.kind() == Value::Kind::boolean)) {
    int64_t index = key.as_int();
    if (object.is_list()) {
      const int64_t n = static_cast<int64_t>(object.items().size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return object.items()[static_cast<size_t>(index)];
    } else {
      const std::u32string cps = to_code_points(object.as_string());
      const int64_t n = static_cast<int64_t>(cps.size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return Value::string(to_utf8(cps.substr(static_cast<size_t>(index), 1)));
    }
    return Value::undefined(object.type_name() + " has no element " + key.repr());
  }
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined(object.type_name() + " has no element " + key.repr());
}

Value slice(const Value& object, const Value& start_value, const Value& stop_value, const Value& step_value) {
  object.require_defined();
  auto bound = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (v.kind() != Value::Kind::integer && v.kind() != Value::Kind::boolean) {
      throw Error(std::string("slice ") + what + " must be an integer or None, not " + py_type(v));
    }
    return v.as_int();
  };
  const auto start_given = bound(start_value, "start");
  const auto stop_given = bound(stop_value, "stop");
  const int64_t step = bound(step_value, "step").value_or(1);
  if (step == 0) throw Error("slice step cannot be zero");
  std::u32string cps;
  int64_t n;
  if (object.is_string()) {
    cps = to_code_points(object.as_string());
    n = static_cast<int64_t>(cps.size());
  } else if (object.is_list() && !object.is_generator()) {
    n = static_cast<int64_t>(object.items().size());
  } else {
    throw Error("'" + py_type(object) + "' object is not subscriptable");
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  const int64_t start = adjust(start_given, step < 0 ? n - 1 : 0);
  const int64_t stop = adjust(stop_given, step < 0 ? -1 : n);
  std::vector<int64_t> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    picked.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  if (object.is_string()) {
    std::u32string out;
    for (int64_t i : picked) out += cps[static_cast<size_t>(i)];
    return Value::string(to_utf8(out));
  }
  List out;
  for (int64_t i : picked) out.push_back(object.items()[static_cast<size_t>(i)]);
  return Value::list(std::move(out), object.is_tuple());
}

bool contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::undefined: return false;
    case Value::Kind::string:
      if (!needle.is_string()) throw Error("'in <string>' requires string as left operand, not " + py_type(needle));
      return haystack.as_string().find(needle.as_string()) != std::string::npos;
    case Value::Kind::list:
      return std::any_of(haystack.items().begin(), haystack.items().end(), [&](const Value& v) { return equal(v, needle); });
    case Value::Kind::dict: return !haystack.is_namespace() && haystack.find(needle) != nullptr;
    default: throw Error("argument of type '" + py_type(haystack) + "' is not iterable");
  }
}

// ---- operators ------------------------------------------------------------------------------------

Value binary_operator(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(a.str() + b.str());  // str_join: autoescape is off
  a.require_defined();
  b.require_defined();
  const bool numbers = a.is_number() && b.is_number();
  const bool floats = numbers && (a.kind() == Value::Kind::floating || b.kind() == Value::Kind::floating);
  auto unsupported = [&]() -> Value {
    throw Error("unsupported operand type(s) for " + op + ": '" + py_type(a) + "' and '" + py_type(b) + "'");
  };
  auto int_result = [](bool overflow, int64_t r) {
    if (overflow) throw Error("integer overflow (ranktune's template integers are 64-bit)");
    return Value::integer(r);
  };
  if (op == "+") {
    if (floats) return Value::floating(a.as_double() + b.as_double());
    int64_t r = 0;
    if (numbers) {
      const bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
      return int_result(overflow, r);
    }
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > kMaxSize) throw Error("string too large");
      if (a.is_markup() || b.is_markup()) return Value::markup(escaped(a) + escaped(b));
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_string()) throw Error("can only concatenate str (not \"" + py_type(b) + "\") to str");
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
      List out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(out), a.is_tuple());
    }
    return unsupported();
  }
  if (op == "-") {
    if (floats) return Value::floating(a.as_double() - b.as_double());
    int64_t r = 0;
    if (numbers) {
      const bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
      return int_result(overflow, r);
    }
    return unsupported();
  }
  if (op == "*") {
    if (floats) return Value::floating(a.as_double() * b.as_double());
    int64_t r = 0;
    if (numbers) {
      const bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      return int_result(overflow, r);
    }
    const Value* seq = a.is_number() ? &b : &a;
    const Value* times = a.is_number() ? &a : &b;
    if ((seq->is_string() || seq->is_list()) && times->kind() != Value::Kind::floating && times->is_number()) {
      const int64_t n = std::max<int64_t>(0, times->as_int());
      const size_t unit = seq->is_string() ? seq->as_string().size() : seq->items().size();
      if (unit != 0 && static_cast<uint64_t>(n) > kMaxSize / unit) throw Error("repetition result too large");
      if (seq->is_string()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq->as_string();
        return Value::string(out);
      }
      List out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->items().begin(), seq->items().end());
      return Value::list(std::move(out), seq->is_tuple());
    }
    return unsupported();
  }
  if (op == "/" || op == "//" || op == "%") {
    if (a.is_string() && op == "%") throw Error("printf-style string formatting ('...' % values) is not supported by ranktune's chat template renderer");
    if (!numbers) return unsupported();
    if (b.as_double() == 0) throw Error(op == "/" ? "division by zero" : floats ? "float modulo" : "integer division or modulo by zero");
    if (op == "/") return Value::floating(a.as_double() / b.as_double());
    if (floats) {
      const double q = std::floor(a.as_double() / b.as_double());
      if (op == "//") return Value::floating(q);
      double m = std::fmod(a.as_double(), b.as_double());
      if (m != 0 && ((m < 0) != (b.as_double() < 0))) m += b.as_double();
      return Value::floating(m);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    if (x == INT64_MIN && y == -1) throw Error("integer overflow (ranktune's template integers are 64-bit)");
    int64_t q = x / y, m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    return Value::integer(op == "//" ? q : m);
  }
  if (op == "**") {
    if (!numbers) return unsupported();
    if (floats || b.as_int() < 0) return Value::floating(std::pow(a.as_double(), b.as_double()));
    int64_t result = 1;
    for (int64_t i = 0; i < b.as_int(); ++i) {
      if (__builtin_mul_overflow(result, a.as_int(), &result)) throw Error("integer overflow (ranktune's template integers are 64-bit)");
      if (result == 0 || result == 1) break;
    }
    return Value::integer(result);
  }
  throw Error("unknown operator '" + op + "'");
}

// ---- globals --------------------------------------------------------------------------------------

Dict global_functions() {
  Dict globals;
  auto add = [&](const char* name, Function fn) { globals.emplace_back(Value::string(name), Value::callable(name, std::move(fn))); };
  add("raise_exception", [](Args& args) -> Value {
    ArgReader r(args, "raise_exception");
    const Value message = r.next("message");
    r.done();
    throw Error(message.str());
  });
  add("strftime_now", [](Args& args) {
    ArgReader r(args, "strftime_now");
    const std::string format = r.next("format").str();
    r.done();
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    std::string out(256 + format.size() * 16, '\0');
    const size_t n = format.empty() ? 0 : std::strftime(out.data(), out.size(), format.c_str(), &local);
    out.resize(n);
    return Value::string(out);
  });
  add("namespace", [](Args& args) {
    Dict entries;
    for (const Value& positional : args.positional) {
      if (!positional.is_dict()) throw Error("namespace() takes a mapping and keyword arguments, got " + py_type(positional));
      for (const auto& entry : positional.entries()) entries.push_back(entry);
    }
    for (auto& [key, value] : args.keyword) entries.emplace_back(Value::string(key), value);
    return Value::dict(std::move(entries), /*is_namespace=*/true);
  });
  add("dict", [](Args& args) {
    Dict entries;
    if (!args.positional.empty()) throw Error("dict(): only keyword arguments are supported");
    for (auto& [key, value] : args.keyword) entries.emplace_back(Value::string(key), value);
    return Value::dict(std::move(entries));
  });
  add("range", [](Args& args) {
    if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
      throw Error("range() takes 1 to 3 positional arguments");
    }
    std::vector<int64_t> a;
    for (const Value& v : args.positional) a.push_back(checked_int(v, "range() arguments"));
    const int64_t start = a.size() == 1 ? 0 : a[0];
    const int64_t stop = a.size() == 1 ? a[0] : a[1];
    const int64_t step = a.size() == 3 ? a[2] : 1;
    if (step == 0) throw Error("range() arg 3 must not be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      // jinja2's sandbox limit (MAX_RANGE).
      if (out.size() >= 100000) throw Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      out.push_back(Value::integer(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value::list(std::move(out));
  });
  return globals;
}

}  // namespace ranktune::tokenizer::jinja
