#include "ranktune/prompt/calculator.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ranktune::prompt {
namespace {

// Recursive descent over
//   expr  := term (('+' | '-') term)*
//   term  := unary (('*' | '/' | '//') unary)*
//   unary := ('-' | '+') unary | primary
//   primary := number | '(' expr ')'
// Any failure (bad character, division by zero, too deep) sets ok = false.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::optional<double> run() {
    const double v = expr(0);
    skip_spaces();
    if (!ok_ || pos_ != text_.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  }

 private:
  static constexpr int kMaxDepth = 100;

  void skip_spaces() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool accept(char c) {
    skip_spaces();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  double fail() {
    ok_ = false;
    return 0;
  }

  double expr(int depth) {
    double v = term(depth);
    while (ok_) {
      if (accept('+')) {
        v += term(depth);
      } else if (accept('-')) {
        v -= term(depth);
      } else {
        break;
      }
    }
    return v;
  }

  double term(int depth) {
    double v = unary(depth);
    while (ok_) {
      if (accept('*')) {
        v *= unary(depth);
      } else if (accept('/')) {
        // Python's floor division "//", which GSM8K's eval-based calculator also evaluates.
        const bool floor_division = pos_ < text_.size() && text_[pos_] == '/';
        if (floor_division) ++pos_;
        const double d = unary(depth);
        if (d == 0) return fail();
        v = floor_division ? std::floor(v / d) : v / d;
      } else {
        break;
      }
    }
    return v;
  }

  double unary(int depth) {
    if (depth > kMaxDepth) return fail();
    if (accept('-')) return -unary(depth + 1);
    if (accept('+')) return unary(depth + 1);
    return primary(depth);
  }

  double primary(int depth) {
    if (!ok_) return 0;
    if (accept('(')) {
      const double v = expr(depth + 1);
      if (!accept(')')) return fail();
      return v;
    }
    skip_spaces();
    // digits with thousands commas ("1,000", as GSM8K's calculator drops commas), then decimals
    std::string digits;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        digits += c;
      } else if (c == ',' && !digits.empty() && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' &&
                 text_[pos_ + 1] <= '9' && digits.find('.') == std::string::npos) {
        // dropped
      } else if (c == '.' && digits.find('.') == std::string::npos) {
        digits += c;
      } else {
        break;
      }
      ++pos_;
    }
    if (digits.empty() || digits == ".") return fail();
    return std::strtod(digits.c_str(), nullptr);
  }

  std::string_view text_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::optional<double> evaluate_arithmetic(std::string_view expression) {
  if (expression.size() > 10000) return std::nullopt;
  return Parser(expression).run();
}

std::string format_calculator_result(double value) {
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer), "%.6f", value);
  std::string s = buffer;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

std::optional<std::string> pending_calculator_expression(const std::string& generated_text) {
  const size_t open = generated_text.rfind("<<");
  if (open == std::string::npos) return std::nullopt;
  std::string_view rest = std::string_view(generated_text).substr(open + 2);
  if (rest.find(">>") != std::string_view::npos) return std::nullopt;
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  if (rest.empty() || rest.back() != '=') return std::nullopt;
  const std::string_view expression = rest.substr(0, rest.size() - 1);
  if (expression.find('=') != std::string_view::npos) return std::nullopt;
  return std::string(expression);
}

std::optional<std::string> calculator_completion(const std::string& generated_text) {
  const auto expression = pending_calculator_expression(generated_text);
  if (!expression) return std::nullopt;
  const auto value = evaluate_arithmetic(*expression);
  if (!value) return std::nullopt;
  return format_calculator_result(*value) + ">>";
}

}  // namespace ranktune::prompt
