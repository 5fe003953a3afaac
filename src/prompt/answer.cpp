#include "ranktune/prompt/answer.h"

#include "pattern.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/core/utf8.h"
#include "ranktune/prompt/template.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ranktune::prompt {
namespace {

// ---- text helpers ----------------------------------------------------------------------------

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

// The content of the brace group opening at `open` (s[open] == '{'), without nested braces;
// sets `end` past the closing brace. nullopt when unbalanced or nested.
std::optional<std::string> simple_group(const std::string& s, size_t open, size_t* end) {
  if (open >= s.size() || s[open] != '{') return std::nullopt;
  const size_t close = s.find_first_of("{}", open + 1);
  if (close == std::string::npos || s[close] != '}') return std::nullopt;
  *end = close + 1;
  return s.substr(open + 1, close - open - 1);
}

// Removes the LaTeX and typographic dress of a number: \text{..}, \frac{a}{b}, "\$", "{,}", "\!",
// Unicode minus, currency signs, non-breaking spaces.
std::string undress(std::string s) {
  for (const char* cmd : {"\\textbf{", "\\text{", "\\mathrm{", "\\mbox{"}) {
    size_t pos;
    while ((pos = s.find(cmd)) != std::string::npos) {
      size_t end = 0;
      const auto inner = simple_group(s, pos + std::string_view(cmd).size() - 1, &end);
      if (!inner) break;
      s.replace(pos, end - pos, " " + *inner);
    }
  }
  for (const char* cmd : {"\\dfrac{", "\\tfrac{", "\\frac{"}) {
    size_t pos;
    while ((pos = s.find(cmd)) != std::string::npos) {
      size_t mid = 0, end = 0;
      const auto num = simple_group(s, pos + std::string_view(cmd).size() - 1, &mid);
      const auto den = num ? simple_group(s, mid, &end) : std::nullopt;
      if (!den) break;
      s.replace(pos, end - pos, *num + "/" + *den);
    }
  }
  replace_all(s, "{,}", "");
  replace_all(s, "\\!", "");
  replace_all(s, "\\,", "");
  replace_all(s, "\\%", "%");
  replace_all(s, "\\$", "");
  replace_all(s, "$", "");
  replace_all(s, "\xE2\x88\x92", "-");  // U+2212 minus sign
  for (const char* space : {"\xC2\xA0", "\xE2\x80\x89", "\xE2\x80\xAF"}) replace_all(s, space, " ");
  for (const char* currency : {"\xE2\x82\xAC", "\xC2\xA3", "\xC2\xA5", "\xE2\x82\xB9"}) replace_all(s, currency, "");
  return s;
}

// Shortest decimal text of `v` with at most `max_decimals` decimals ("2.5", "3", "0.3333333333").
std::string format_decimal(double v, int max_decimals) {
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer), "%.*f", max_decimals, v);
  std::string s = buffer;
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// A unit after a number: up to three words made of letters (and / ^ . - digits after the first
// letter, for "km/h", "m^2", "sq.", "cm3"), or a bare percent sign before them.
bool is_unit_tail(std::string_view rest) {
  size_t i = 0, words = 0;
  while (i < rest.size()) {
    while (i < rest.size() && is_space(rest[i])) ++i;
    if (i >= rest.size()) break;
    const unsigned char first = static_cast<unsigned char>(rest[i]);
    if (!is_alpha(rest[i]) && first < 0x80) return false;
    if (++words > 3) return false;
    while (i < rest.size() && !is_space(rest[i])) {
      const char c = rest[i];
      const bool ok = is_alpha(c) || is_digit(c) || c == '/' || c == '^' || c == '.' || c == '-' ||
                      static_cast<unsigned char>(c) >= 0x80;
      if (!ok) return false;
      ++i;
    }
  }
  return true;
}

// Reads digits with thousands commas at `i`: "1,000" → "1000". Empty when none.
std::string read_digits(const std::string& s, size_t& i) {
  std::string digits;
  while (i < s.size()) {
    if (is_digit(s[i])) {
      digits += s[i++];
    } else if (s[i] == ',' && !digits.empty() && i + 1 < s.size() && is_digit(s[i + 1])) {
      ++i;
    } else {
      break;
    }
  }
  return digits;
}

struct Decimal {
  std::string integer, fraction;  // digits only
  bool empty() const { return integer.empty() && fraction.empty(); }
  double value() const { return std::strtod(((integer.empty() ? "0" : integer) + "." + fraction + "0").c_str(), nullptr); }
};

Decimal read_decimal(const std::string& s, size_t& i) {
  Decimal d;
  d.integer = read_digits(s, i);
  if (i + 1 < s.size() && s[i] == '.' && is_digit(s[i + 1])) {
    ++i;
    while (i < s.size() && is_digit(s[i])) d.fraction += s[i++];
  }
  return d;
}

void skip_spaces(const std::string& s, size_t& i) {
  while (i < s.size() && is_space(s[i])) ++i;
}

// The canonical text of the number in `text`, or nullopt (see normalize_number).
std::optional<std::string> canonical_number(const std::string& text) {
  if (text.size() > 256) return std::nullopt;  // not an answer; keeps the work per span bounded
  std::string s = trim(undress(text));
  while (!s.empty() && std::string_view(".,;:!?").find(s.back()) != std::string_view::npos) s = trim(s.substr(0, s.size() - 1));
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    negative = s[i] == '-';
    ++i;
    skip_spaces(s, i);
  }
  const Decimal whole = read_decimal(s, i);
  if (whole.empty()) return std::nullopt;

  std::optional<double> value;  // set for fractions, mixed numbers and exponents
  size_t j = i;
  skip_spaces(s, j);
  if (j < s.size() && s[j] == '/') {  // "3/4"
    ++j;
    skip_spaces(s, j);
    const Decimal den = read_decimal(s, j);
    if (den.empty() || den.value() == 0) return std::nullopt;
    value = whole.value() / den.value();
    i = j;
  } else if (j > i && j < s.size() && is_digit(s[j]) && whole.fraction.empty()) {  // "1 1/2"
    size_t k = j;
    const Decimal num = read_decimal(s, k);
    skip_spaces(s, k);
    if (k < s.size() && s[k] == '/' && num.fraction.empty()) {
      ++k;
      skip_spaces(s, k);
      const Decimal den = read_decimal(s, k);
      if (den.empty() || den.value() == 0 || !den.fraction.empty()) return std::nullopt;
      value = whole.value() + num.value() / den.value();
      i = k;
    } else {
      return std::nullopt;  // "3 4": two numbers
    }
  } else if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {  // "1e3", "2.5E-2"
    size_t k = i + 1;
    if (k < s.size() && (s[k] == '-' || s[k] == '+')) ++k;
    if (k < s.size() && is_digit(s[k])) {
      while (k < s.size() && is_digit(s[k]) && k - i < 6) ++k;
      if (k == s.size() || is_space(s[k])) {
        const double exponent = std::strtod(s.substr(i + 1, k - i - 1).c_str(), nullptr);
        value = whole.value() * std::pow(10.0, exponent);
        i = k;
      }
    }
  }
  skip_spaces(s, i);
  if (i < s.size() && s[i] == '%') ++i;
  if (!is_unit_tail(std::string_view(s).substr(i))) return std::nullopt;

  if (value) {
    if (!std::isfinite(*value)) return std::nullopt;
    return format_decimal(negative ? -*value : *value, 10);
  }
  std::string integer = whole.integer;
  integer.erase(0, std::min(integer.find_first_not_of('0'), integer.size()));
  if (integer.empty()) integer = "0";
  std::string fraction = whole.fraction;
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  std::string out = integer + (fraction.empty() ? "" : "." + fraction);
  if (negative && out != "0") out = "-" + out;
  return out;
}

// ---- patterns --------------------------------------------------------------------------------

// The matches of `pattern` in `text`. Model output is arbitrary text: when PCRE2 gives up on it
// (match or stack limits), the pattern counts as not matching, with one warning per process,
// rather than a reward computation throwing in the middle of training.
std::vector<RegexMatch> matches_of(const Regex& pattern, const std::string& text) {
  try {
    return pattern.find_all(text, /*group=*/1);
  } catch (const Error& e) {
    static std::once_flag warned;
    std::call_once(warned, [&] { log_warning(std::string(e.what()) + "; treating it as no match"); });
    return {};
  }
}

// A number as it appears in running text: optional minus and currency, thousands commas, decimals.
// Not preceded by a letter, digit, underscore or '.', so "5-3" gives 3, not -3, and "v2" nothing.
const char* const kNumberInText =
    "(?<![\\w.])(?:-|\\x{2212})?[$\\x{20AC}\\x{00A3}]?(?:\\d{1,3}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?";

// A number right after an answer marker, as group 1: sign, currency, thousands commas, decimals,
// a simple fraction, a percent sign ("$1,000.00", "-12", "3/4", "50%").
const std::string kAnswerNumber =
    "((?:[-+]|\\x{2212})?[ \\t]*+[$\\x{20AC}\\x{00A3}]?[ \\t]*+-?(?:\\d[\\d,]*+(?:\\.\\d++)?|\\.\\d++)"
    "(?:[ \\t]*+/[ \\t]*+\\d++)?[ \\t]*+%?)";

// The known answer formats found by regular expressions, each with the answer in group 1
// (\boxed{...} is found by boxed_answer). Quantifiers are possessive where backtracking could
// only repeat work, so that long runs of spaces or "#" stay linear.
const std::vector<std::string>& known_formats() {
  static const std::vector<std::string> formats = {
      // GSM8K: "#### 72".
      "####[ \\t]*+" + kAnswerNumber,
      // Wei et al.: "The answer is 72." (also "the final answer is: $72").
      "(?i)\\bthe\\s++(?:final\\s++)?answer\\s++is\\s*+:?\\s*+" + kAnswerNumber,
      // R1: <answer> ... </answer> (the innermost pair when nested).
      "(?s)<answer>((?:(?!</?answer>).)*+)</answer>",
  };
  return formats;
}

// The last number in `text`, normalised.
std::optional<std::string> last_number(const std::string& text) {
  const auto matches = matches_of(*detail::cached_pattern(kNumberInText), text);
  for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
    if (auto n = canonical_number(text.substr(it->begin, it->end - it->begin))) return n;
  }
  return std::nullopt;
}

// The answer in a captured span: the number when the span is one ("$1,000.00", "18 dollars"),
// else the last number in it ("x = 5"), else the trimmed text ("yes"); nullopt when blank.
std::optional<std::string> answer_from_span(const std::string& span) {
  std::string s = trim(span);
  if (s.empty()) return std::nullopt;
  if (auto n = canonical_number(s)) return n;
  if (auto n = last_number(s)) return n;
  while (!s.empty() && s.back() == '.') s.pop_back();
  s = trim(s);
  if (s.empty()) return std::nullopt;
  return s;
}

struct Candidate {
  size_t begin;
  std::string answer;
};

// The last match of `pattern` in `text` whose group gives an answer.
std::optional<Candidate> last_answer(const Regex& pattern, const std::string& text) {
  const auto matches = matches_of(pattern, text);
  for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
    if (!it->group) continue;
    if (auto a = answer_from_span(*it->group)) return Candidate{it->begin, *a};
  }
  return std::nullopt;
}

// The last \boxed{...} (balanced braces inside) whose content gives an answer. Braces are matched
// in one linear pass, so deep or unbalanced nesting costs no more than the text's length.
std::optional<Candidate> boxed_answer(const std::string& text) {
  static const std::string kBoxed = "\\boxed";
  std::vector<size_t> starts;
  for (size_t pos = text.find(kBoxed); pos != std::string::npos; pos = text.find(kBoxed, pos + 1)) starts.push_back(pos);
  if (starts.empty()) return std::nullopt;
  std::vector<size_t> closing(text.size(), std::string::npos), open;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{') {
      open.push_back(i);
    } else if (text[i] == '}' && !open.empty()) {
      closing[open.back()] = i;
      open.pop_back();
    }
  }
  for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
    size_t brace = *it + kBoxed.size();
    while (brace < text.size() && is_space(text[brace])) ++brace;
    if (brace >= text.size() || text[brace] != '{' || closing[brace] == std::string::npos) continue;
    if (auto a = answer_from_span(text.substr(brace + 1, closing[brace] - brace - 1))) return Candidate{*it, *a};
  }
  return std::nullopt;
}

std::optional<std::string> flexible_answer(const std::string& text) {
  std::optional<Candidate> best = boxed_answer(text);
  for (const auto& format : known_formats()) {
    auto c = last_answer(*detail::cached_pattern(format), text);
    if (c && (!best || c->begin > best->begin)) best = std::move(c);
  }
  if (best) return best->answer;
  return last_number(text);
}

std::string simplify_text(const std::string& s) {
  std::string out;
  for (char c : trim(s)) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  while (!out.empty() && (out.back() == '.' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

// ---- public API ------------------------------------------------------------------------------

Extraction extract(const std::string& completion, const std::string& answer_pattern) {
  const auto pattern = detail::cached_pattern(answer_pattern);
  RANKTUNE_CHECK(pattern->capture_count() == 1, "answer pattern '", answer_pattern,
                 "' must have exactly one capture group, found ", pattern->capture_count());
  const std::string text = utf8_lossy(completion);
  Extraction out;
  if (auto c = last_answer(*pattern, text)) out.strict = c->answer;
  out.flexible = flexible_answer(text);
  return out;
}

Extraction extract(const std::string& completion, const PromptTemplate& tmpl) {
  return extract(cut_at_stop(completion, tmpl.stop()), tmpl.answer_pattern());
}

std::optional<std::string> extract_answer(const std::string& text) {
  return flexible_answer(utf8_lossy(text));
}

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stop) {
  size_t cut = text.size();
  for (const auto& s : stop) {
    if (s.empty()) continue;
    cut = std::min(cut, text.find(s));
  }
  return text.substr(0, cut);
}

std::string normalize_number(const std::string& text) {
  if (auto n = canonical_number(text)) return *n;
  return trim(text);
}

std::optional<double> parse_number(const std::string& text) {
  const auto n = canonical_number(text);
  if (!n) return std::nullopt;
  return std::strtod(n->c_str(), nullptr);
}

bool answers_match(const std::string& predicted, const std::string& gold) {
  const auto p = canonical_number(predicted);
  const auto g = canonical_number(gold);
  if (p && g) {
    if (*p == *g) return true;
    // Two integers compare exactly (also beyond double precision); anything else within tolerance.
    if (p->find('.') == std::string::npos && g->find('.') == std::string::npos) return false;
    const double a = std::strtod(p->c_str(), nullptr), b = std::strtod(g->c_str(), nullptr);
    return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
  }
  if (p || g) return false;
  return simplify_text(predicted) == simplify_text(gold);
}

}  // namespace ranktune::prompt
