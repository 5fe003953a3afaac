#pragma once
// The syntax tree of a Jinja template, and the parser that builds it from jinja_lexer's tokens.
// Operator precedence is jinja2's (loosest first): `x if c else y`, or, and, not, comparisons and
// `in`, + and -, ~, * / // %, **, unary - and +, then postfix (.attr, [item], [a:b:c], call) and
// filters/tests: `'a' + m | trim + 'b'` trims only m, `not x is defined` is `not (x is defined)`.

#include "jinja_value.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,    // value
    name,       // name
    list,       // children
    tuple,      // children
    dict,       // children: key, value, key, value, ...
    attribute,  // children[0].name
    item,       // children[0][children[1]]
    slice,      // children[0][children[1]:children[2]:children[3]] (null parts absent)
    call,       // children[0](children[1:], keywords)
    filter,     // children[0] | name(children[1:], keywords)
    test,       // children[0] is [not] name(children[1:], keywords)
    unary,      // name ("-", "+", "not") children[0]
    binary,     // children[0] name children[1]: + - * / // % ** ~ and or
    compare,    // children[0] ops[0] children[1] ops[1] children[2] ...: == != < <= > >= in notin
    conditional // children[1] if children[0] else children[2] (else absent: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  std::vector<std::string> ops;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct MacroParameter {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Node {
  enum class Kind {
    text,        // text
    output,      // {{ expr }}
    if_,         // branches (condition, body); else_body
    for_,        // targets in expr [if filter]: body; else_body
    set,         // targets (or target.attribute) = expr
    set_block,   // {% set name %}body{% endset %}
    macro,       // name(parameters): body
    filter_block,// {% filter name(args) %}body: expr is the filter applied to a placeholder
    break_,
    continue_,
    scope        // {% generation %}body (transformers' assistant tracker: renders its body)
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;  // for: the inline `if`
  std::vector<std::string> targets;
  std::string attribute;  // set ns.attribute
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::vector<MacroParameter> parameters;
};

// Throws ranktune::Error (its context's line is the template's line) naming what was expected
// or the construct this implementation does not support.
Body parse_template(const std::string& source);

}  // namespace ranktune::tokenizer::jinja
