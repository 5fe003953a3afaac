#pragma once
// Template text -> tokens, as jinja2's lexer with transformers' settings: trim_blocks (the first
// newline after a block or comment tag goes), lstrip_blocks (spaces and tabs before a block or
// comment tag at the start of a line go), `{%-`/`-%}`/`{{-`/`-}}` strip all whitespace on that
// side (`+` keeps it), \r\n and \r read as \n, and one trailing newline of the template dropped.

#include <string>
#include <vector>

namespace ranktune::tokenizer::jinja {

struct Token {
  enum class Type { text, variable_begin, variable_end, block_begin, block_end, name, string, integer, floating, op, eof };
  Type type;
  std::string value;  // text, name, decoded string literal, number digits or operator
  int line;
};

// Throws ranktune::Error ("line N: ...") on an unclosed tag, comment or string, or a character
// that starts no token.
std::vector<Token> lex(const std::string& source);

// Python's str.strip()/lstrip()/rstrip() for Unicode whitespace; `chars` given: those code points.
enum class StripSide { both, left, right };
std::string python_strip(const std::string& s, StripSide side, const std::string* chars = nullptr);

}  // namespace ranktune::tokenizer::jinja
