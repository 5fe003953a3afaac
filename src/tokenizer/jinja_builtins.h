#pragma once
// What a template can call besides its own macros, with jinja2's (and Python's) semantics:
// attribute and item access under transformers' ImmutableSandboxedEnvironment (x.name falls back to
// x['name']; list.append, dict.pop and other mutators are refused), the string and dict methods
// real templates call, operators and the globals (raise_exception, strftime_now, namespace, range,
// dict) in jinja_builtins.cpp; filters and tests in jinja_filters.cpp.

#include "jinja_value.h"

#include <string>
#include <vector>

namespace ranktune::tokenizer::jinja {

// jinja2's getattr/getitem: a missing attribute or key is an undefined value carrying jinja2's
// message; an undefined object is an error.
Value get_attribute(const Value& object, const std::string& name);
Value get_item(const Value& object, const Value& key);
// value[start:stop:step] on a list or string (Python slice semantics, negative steps included).
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// Applies a filter or a test by name; throws for names outside supported_filters()/tests().
Value apply_filter(const std::string& name, const Value& input, Args& args);
bool apply_test(const std::string& name, const Value& input, Args& args);
const std::vector<std::string>& supported_filters();
const std::vector<std::string>& supported_tests();

// raise_exception, strftime_now, namespace, range, dict.
Dict global_functions();

// Python's binary operators on values (+ - * / // % ** ~); errors as Python words them.
Value binary_operator(const std::string& op, const Value& left, const Value& right);
// Python's `needle in haystack` (substring, list item, dict key; false for undefined).
bool contains(const Value& haystack, const Value& needle);

// Reads a call's arguments by position or keyword, as Python binds them; errors name `function`.
class ArgReader {
 public:
  ArgReader(Args& args, std::string function) : args_(args), function_(std::move(function)) {}
  // The next positional argument, or the keyword `name`, or `fallback` (none given: required).
  Value next(const char* name, const Value* fallback = nullptr);
  Value next(const char* name, const Value& fallback) { return next(name, &fallback); }
  // Positional arguments not read yet.
  std::vector<Value> rest();
  const std::vector<std::pair<std::string, Value>>& keywords() const { return args_.keyword; }
  // Throws when arguments are left over.
  void done();

 private:
  Args& args_;
  std::string function_;
  size_t position_ = 0;
  std::vector<bool> used_keywords_;
};

// ---- helpers shared by jinja_builtins.cpp and jinja_filters.cpp --------------------------------

// Outputs larger than this are refused (a template cannot build gigabytes with 'x' * 10**9).
constexpr size_t kMaxSize = size_t{64} << 20;

std::string py_type(const Value& v);                 // Python's type name: "NoneType", "str", ...
char32_t to_upper(char32_t c);                        // the C library's Unicode case mapping
char32_t to_lower(char32_t c);
std::string map_case(const std::string& s, char32_t (*f)(char32_t));
std::string jinja_title(const std::string& s);        // jinja2's title filter
std::string capitalize(const std::string& s);
std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
List split(const std::string& s, const Value& separator, int64_t max_split);  // Python's str.split
std::string html_escape(const std::string& s);
std::string escaped(const Value& v);                  // markup as is, other text HTML-escaped
int64_t length(const Value& v);                       // Python's len()
Value items_of(const Value& dict);                    // [(key, value), ...]
int64_t checked_int(const Value& v, const char* what);
size_t bounded_width(const Value& v, const char* what);

}  // namespace ranktune::tokenizer::jinja
