#include "jinja_lexer.h"

#include "jinja_value.h"
#include "ranktune/core/error.h"
#include "utf8.h"

#include <cstring>

namespace ranktune::tokenizer::jinja {

std::string python_strip(const std::string& s, StripSide side, const std::string* chars) {
  const std::u32string set = chars != nullptr ? to_code_points(*chars) : std::u32string();
  auto strippable = [&](char32_t c) {
    return chars != nullptr ? set.find(c) != std::u32string::npos : is_python_space(c);
  };
  size_t begin = 0, end = s.size();
  if (side != StripSide::right) {
    while (begin < end) {
      size_t next = begin;
      if (!strippable(next_code_point(s, next))) break;
      begin = next;
    }
  }
  if (side != StripSide::left) {
    while (end > begin) {
      size_t start = 0;
      if (!strippable(previous_code_point(s, end, &start))) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

namespace {

[[noreturn]] void fail(int line, const std::string& message) {
  throw Error(message, ErrorContext{"", "", line});
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's escapes in a string literal (jinja2 decodes literals with "unicode-escape"); an unknown
// escape keeps its backslash, as Python does.
std::string decode_string(const std::string& body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out += body[i];
      continue;
    }
    const char c = body[++i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;  // a line continuation
      case 'x':
      case 'u':
      case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        char32_t code = 0;
        for (size_t k = 1; k <= digits; ++k) {
          const int h = i + k < body.size() ? hex_value(body[i + k]) : -1;
          if (h < 0) fail(line, "truncated \\" + std::string(1, c) + " escape in a string");
          code = code * 16 + static_cast<char32_t>(h);
        }
        if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) fail(line, "invalid \\" + std::string(1, c) + " escape in a string");
        append_utf8(out, code);
        i += digits;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          char32_t code = static_cast<char32_t>(c - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            code = code * 8 + static_cast<char32_t>(body[++i] - '0');
          }
          append_utf8(out, code);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      if (tag == std::string::npos) {
        emit_text(text, pos);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign == '-') {
        text = python_strip(text, StripSide::right);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: only spaces and tabs between the line's start and the tag.
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            text.find_first_not_of(" \t\f\v\r", line_start) == std::string::npos) {
          text.resize(line_start);
        }
      }
      emit_text(text, pos);
      line_ = line_at(tag);
      pos = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = lex_comment(pos, &line_starting);
      } else if (kind == '%' && lex_raw(pos, &pos, &line_starting)) {
      } else {
        pos = lex_tag(pos, kind == '{', &line_starting);
      }
    }
    tokens_.push_back({Token::Type::eof, "", line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos && i + 1 < src_.size(); i = src_.find('{', i + 1)) {
      const char next = src_[i + 1];
      if (next == '{' || next == '%' || next == '#') return i;
    }
    return std::string::npos;
  }

  int line_at(size_t offset) {
    while (counted_ < offset && counted_ < src_.size()) {
      if (src_[counted_++] == '\n') ++counted_line_;
    }
    return counted_line_;
  }

  void emit_text(const std::string& text, size_t at) {
    if (!text.empty()) tokens_.push_back({Token::Type::text, text, line_at(at)});
  }

  // After an end marker: `-` strips all whitespace, trim_blocks one newline (blocks and comments).
  size_t after_end(size_t pos, char sign, bool trim_newline, bool* line_starting) {
    if (sign == '-') {
      while (pos < src_.size() && is_space(src_[pos])) ++pos;
    } else if (sign != '+' && trim_newline && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    *line_starting = pos > 0 && src_[pos - 1] == '\n';
    return pos;
  }

  size_t lex_comment(size_t pos, bool* line_starting) {
    const size_t end = src_.find("#}", pos);
    if (end == std::string::npos) fail(line_, "unclosed comment: {# without #}");
    const char sign = end > pos && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : '\0';
    return after_end(end + 2, sign, true, line_starting);
  }

  // {% raw %}...{% endraw %}: the text between is output as it is.
  bool lex_raw(size_t pos, size_t* next, bool* line_starting) {
    size_t p = pos;
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    char sign = '\0';
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) fail(line_, "expected %} after raw");
    p = after_end(p + 2, sign, true, line_starting);
    for (size_t open = src_.find("{%", p); open != std::string::npos; open = src_.find("{%", open + 2)) {
      size_t q = open + 2;
      const char open_sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q++] : '\0';
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < src_.size() && is_space(src_[q])) ++q;
      char end_sign = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) end_sign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) continue;
      std::string body = src_.substr(p, open - p);
      if (open_sign == '-') body = python_strip(body, StripSide::right);
      emit_text(body, p);
      *next = after_end(q + 2, end_sign, true, line_starting);
      return true;
    }
    fail(line_, "unclosed {% raw %}: no {% endraw %}");
  }

  size_t lex_tag(size_t pos, bool variable, bool* line_starting) {
    tokens_.push_back({variable ? Token::Type::variable_begin : Token::Type::block_begin, "", line_});
    std::vector<char> brackets;
    const char* close = variable ? "}}" : "%}";
    while (true) {
      while (pos < src_.size() && is_space(src_[pos])) ++pos;
      if (pos >= src_.size()) fail(line_, std::string("unclosed tag: expected ") + close);
      const int line = line_at(pos);
      if (brackets.empty()) {
        char sign = '\0';
        size_t p = pos;
        if (src_[p] == '-' || (src_[p] == '+' && !variable)) sign = src_[p++];
        if (src_.compare(p, 2, close) == 0) {
          tokens_.push_back({variable ? Token::Type::variable_end : Token::Type::block_end, "", line});
          return after_end(p + 2, sign, !variable, line_starting);
        }
      }
      const char c = src_[pos];
      if (is_name_start(c)) {
        size_t end = pos;
        while (end < src_.size() && is_name_char(src_[end])) ++end;
        tokens_.push_back({Token::Type::name, src_.substr(pos, end - pos), line});
        pos = end;
      } else if (is_digit(c)) {
        pos = lex_number(pos, line);
      } else if (c == '\'' || c == '"') {
        size_t end = pos + 1;
        while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
        if (end >= src_.size()) fail(line, "unterminated string literal");
        tokens_.push_back({Token::Type::string, decode_string(src_.substr(pos + 1, end - pos - 1), line), line});
        pos = end + 1;
      } else {
        static const char* const kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* two : kTwo) {
          if (src_.compare(pos, 2, two) == 0) op = two;
        }
        if (op.empty()) {
          if (std::strchr("+-*/%~<>=()[]{},.:|", c) == nullptr || c == '\0') {
            fail(line, std::string("unexpected character '") + c + "' in a tag");
          }
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") brackets.push_back(op[0]);
        if (op == ")" || op == "]" || op == "}") {
          if (brackets.empty()) fail(line, "unexpected '" + op + "'");
          brackets.pop_back();
        }
        tokens_.push_back({Token::Type::op, op, line});
        pos += op.size();
      }
    }
  }

  size_t lex_number(size_t pos, int line) {
    auto digits = [&](size_t p) {
      while (p < src_.size() && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1])))) ++p;
      return p;
    };
    size_t end = digits(pos);
    bool is_float = false;
    const bool after_dot = !tokens_.empty() && tokens_.back().type == Token::Type::op && tokens_.back().value == ".";
    if (!after_dot && end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
      end = digits(end + 1);
      is_float = true;
    }
    if (!after_dot && end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && is_digit(src_[p])) {
        end = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    tokens_.push_back({is_float ? Token::Type::floating : Token::Type::integer, text, line});
    return end;
  }

  std::string src_;
  std::vector<Token> tokens_;
  int line_ = 1;
  size_t counted_ = 0;
  int counted_line_ = 1;
};

}  // namespace

std::vector<Token> lex(const std::string& source) {
  // jinja2 reads \r\n and \r as \n and, with keep_trailing_newline off, drops one final newline.
  std::string text;
  text.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      text += source[i];
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return Lexer(std::move(text)).run();
}

}  // namespace ranktune::tokenizer::jinja
