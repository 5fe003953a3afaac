#include "jinja_ast.h"
#include "jinja_lexer.h"

#include "ranktune/core/error.h"

#include <cstdlib>
#include <set>

namespace ranktune::tokenizer::jinja {
namespace {

using Type = Token::Type;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_all() {
    Body body = parse_body({});
    if (peek().type != Type::eof) fail("unexpected '" + peek().value + "'");
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const { return peek(ahead).type == Type::op && peek(ahead).value == op; }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).type == Type::name && peek(ahead).value == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(message, ErrorContext{"", "", peek().line});
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Type::eof: return "the end of the template";
      case Type::block_end: return "the end of the tag";
      case Type::variable_end: return "'}}'";
      case Type::text: return "text";
      default: return "'" + t.value + "'";
    }
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().type != Type::name) fail("expected a name, got " + describe(peek()));
    return next().value;
  }
  void expect_block_end() {
    if (peek().type != Type::block_end) fail("expected the end of the tag (%}), got " + describe(peek()));
    next();
  }

  // ---- statements ------------------------------------------------------------------------------
  // Parses nodes until a block tag whose keyword is in `ends` (left unconsumed, after its {%).
  Body parse_body(const std::set<std::string>& ends) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == Type::eof) {
        if (!ends.empty()) {
          std::string tags;
          for (const std::string& end : ends) tags += (tags.empty() ? "'" : " or '") + end + "'";
          fail("unexpected end of the template; Jinja was looking for the following tags: " + tags);
        }
        return body;
      }
      if (t.type == Type::text) {
        auto node = make_node(Node::Kind::text, t.line);
        node->text = t.value;
        next();
        body.push_back(std::move(node));
      } else if (t.type == Type::variable_begin) {
        next();
        auto node = make_node(Node::Kind::output, t.line);
        node->expr = parse_tuple(true);
        if (peek().type != Type::variable_end) fail("expected '}}', got " + describe(peek()));
        next();
        body.push_back(std::move(node));
      } else if (t.type == Type::block_begin) {
        if (peek(1).type == Type::name && ends.count(peek(1).value)) {
          next();
          return body;
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  NodePtr make_node(Node::Kind kind, int line) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->line = line;
    return node;
  }

  NodePtr parse_statement() {
    const int line = peek().line;
    if (peek().type != Type::name) fail("expected a statement keyword, got " + describe(peek()));
    const std::string keyword = next().value;
    if (keyword == "if") return parse_if(line);
    if (keyword == "for") return parse_for(line);
    if (keyword == "set") return parse_set(line);
    if (keyword == "macro") return parse_macro(line);
    if (keyword == "filter") return parse_filter_block(line);
    if (keyword == "break" || keyword == "continue") {
      expect_block_end();
      return make_node(keyword == "break" ? Node::Kind::break_ : Node::Kind::continue_, line);
    }
    if (keyword == "generation") {
      expect_block_end();
      auto node = make_node(Node::Kind::scope, line);
      node->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return node;
    }
    static const std::set<std::string> kKnown = {"call", "include", "import", "from", "extends", "block", "with",
                                                  "autoescape", "do", "trans", "elif", "else", "endif", "endfor",
                                                  "endset", "endmacro", "endfilter", "endgeneration"};
    if (kKnown.count(keyword)) {
      throw Error("the Jinja statement '" + keyword + "' is not supported here", ErrorContext{"", "", line});
    }
    throw Error("unknown Jinja statement '" + keyword + "'", ErrorContext{"", "", line});
  }

  NodePtr parse_if(int line) {
    auto node = make_node(Node::Kind::if_, line);
    while (true) {
      ExprPtr condition = parse_expression(true);
      expect_block_end();
      Body body = parse_body({"elif", "else", "endif"});
      node->branches.emplace_back(std::move(condition), std::move(body));
      const std::string keyword = next().value;
      if (keyword == "elif") continue;
      if (keyword == "else") {
        expect_block_end();
        node->else_body = parse_body({"endif"});
        next();
      }
      expect_block_end();
      return node;
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    const bool parenthesised = skip_op("(");
    do {
      targets.push_back(expect_name());
    } while (skip_op(","));
    if (parenthesised) expect_op(")");
    return targets;
  }

  NodePtr parse_for(int line) {
    auto node = make_node(Node::Kind::for_, line);
    node->targets = parse_targets();
    if (!skip_name("in")) fail("expected 'in' in the for loop, got " + describe(peek()));
    node->expr = parse_tuple(false);
    if (skip_name("if")) node->filter = parse_expression(true);
    if (is_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    node->body = parse_body({"else", "endfor"});
    if (next().value == "else") {
      expect_block_end();
      node->else_body = parse_body({"endfor"});
      next();
    }
    expect_block_end();
    return node;
  }

  NodePtr parse_set(int line) {
    auto node = make_node(Node::Kind::set, line);
    if (peek(1).type == Type::op && peek(1).value == "." && peek().type == Type::name) {
      node->targets.push_back(next().value);
      next();
      node->attribute = expect_name();
    } else {
      node->targets = parse_targets();
    }
    if (peek().type == Type::block_end) {
      if (node->targets.size() != 1 || !node->attribute.empty()) fail("a {% set %} block assigns one name");
      next();
      node->kind = Node::Kind::set_block;
      node->body = parse_body({"endset"});
      next();
      expect_block_end();
      return node;
    }
    expect_op("=");
    node->expr = parse_tuple(true);
    expect_block_end();
    return node;
  }

  NodePtr parse_macro(int line) {
    auto node = make_node(Node::Kind::macro, line);
    node->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      MacroParameter parameter;
      parameter.name = expect_name();
      if (skip_op("=")) parameter.default_value = parse_expression(true);
      node->parameters.push_back(std::move(parameter));
      if (!skip_op(",")) break;
    }
    expect_op(")");
    expect_block_end();
    node->body = parse_body({"endmacro"});
    next();
    expect_block_end();
    return node;
  }

  NodePtr parse_filter_block(int line) {
    auto node = make_node(Node::Kind::filter_block, line);
    auto placeholder = std::make_unique<Expr>();
    placeholder->kind = Expr::Kind::literal;
    placeholder->line = line;
    node->expr = parse_filters(std::move(placeholder), /*first_bar_done=*/true);
    expect_block_end();
    node->body = parse_body({"endfilter"});
    next();
    expect_block_end();
    return node;
  }

  // ---- expressions -----------------------------------------------------------------------------
  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // `a, b` is a tuple (as in {{ a, b }} or set x = a, b); one expression is itself.
  ExprPtr parse_tuple(bool with_conditional) {
    const int line = peek().line;
    ExprPtr first = with_conditional ? parse_expression(true) : parse_or();
    if (!is_op(",")) return first;
    auto tuple = make(Expr::Kind::tuple, line);
    tuple->children.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().type == Type::block_end || peek().type == Type::variable_end || is_name("if")) break;
      tuple->children.push_back(with_conditional ? parse_expression(true) : parse_or());
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_conditional) {
    if (++depth_ > 200) fail("expression nested too deeply");
    ExprPtr e = parse_or();
    while (with_conditional && is_name("if")) {
      const int line = next().line;
      auto conditional = make(Expr::Kind::conditional, line);
      conditional->children.push_back(parse_or());
      conditional->children.push_back(std::move(e));
      if (skip_name("else")) conditional->children.push_back(parse_expression(true));
      e = std::move(conditional);
    }
    --depth_;
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(Expr::Kind::binary, line);
    e->name = op;
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  // One level of left-associative binary operators: `ops` are operator tokens, or keywords
  // (`and`, `or`) when `keywords`; operands come from the next level up.
  ExprPtr parse_binary_level(ExprPtr (Parser::*operand)(), std::initializer_list<const char*> ops, bool keywords) {
    ExprPtr e = (this->*operand)();
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (keywords ? is_name(op) : is_op(op)) matched = op;
      }
      if (matched == nullptr) return e;
      const int line = next().line;
      e = binary(matched, std::move(e), (this->*operand)(), line);
    }
  }

  ExprPtr parse_or() { return parse_binary_level(&Parser::parse_and, {"or"}, true); }
  ExprPtr parse_and() { return parse_binary_level(&Parser::parse_not, {"and"}, true); }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const int line = next().line;
      if (++depth_ > 200) fail("expression nested too deeply");
      auto e = make(Expr::Kind::unary, line);
      e->name = "not";
      e->children.push_back(parse_not());
      --depth_;
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (peek().type == Type::op && (peek().value == "==" || peek().value == "!=" || peek().value == "<" ||
                                      peek().value == "<=" || peek().value == ">" || peek().value == ">=")) {
        op = next().value;
      } else if (skip_name("in")) {
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!e) {
        e = make(Expr::Kind::compare, line);
        e->children.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->children.push_back(parse_math1());
    }
    return e ? std::move(e) : std::move(first);
  }

  ExprPtr parse_math1() { return parse_binary_level(&Parser::parse_concat, {"+", "-"}, false); }
  ExprPtr parse_concat() { return parse_binary_level(&Parser::parse_math2, {"~"}, false); }
  ExprPtr parse_math2() { return parse_binary_level(&Parser::parse_pow, {"*", "/", "//", "%"}, false); }
  ExprPtr parse_pow() { return parse_binary_level(&Parser::parse_unary_with_filters, {"**"}, false); }
  ExprPtr parse_unary_with_filters() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filter) {
    if (++depth_ > 200) fail("expression nested too deeply");
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = make(Expr::Kind::unary, t.line);
      e->name = t.value;
      e->children.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e), false);
    --depth_;
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Type::name: {
        next();
        if (t.value == "true" || t.value == "True") return literal(Value::boolean(true), t.line);
        if (t.value == "false" || t.value == "False") return literal(Value::boolean(false), t.line);
        if (t.value == "none" || t.value == "None") return literal(Value::none(), t.line);
        auto e = make(Expr::Kind::name, t.line);
        e->name = t.value;
        return e;
      }
      case Type::string: {
        std::string text = next().value;
        while (peek().type == Type::string) text += next().value;  // "a" "b" is "ab"
        return literal(Value::string(std::move(text)), t.line);
      }
      case Type::integer: {
        next();
        errno = 0;
        const long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) fail("integer literal " + t.value + " is too large");
        return literal(Value::integer(v), t.line);
      }
      case Type::floating: next(); return literal(Value::floating(std::strtod(t.value.c_str(), nullptr)), t.line);
      default: break;
    }
    if (skip_op("(")) {
      if (skip_op(")")) return make(Expr::Kind::tuple, t.line);
      ExprPtr first = parse_expression(true);
      if (skip_op(")")) return first;
      auto tuple = make(Expr::Kind::tuple, t.line);
      tuple->children.push_back(std::move(first));
      while (skip_op(",")) {
        if (is_op(")")) break;
        tuple->children.push_back(parse_expression(true));
      }
      expect_op(")");
      return tuple;
    }
    if (skip_op("[")) {
      auto list = make(Expr::Kind::list, t.line);
      while (!is_op("]")) {
        list->children.push_back(parse_expression(true));
        if (!skip_op(",")) break;
      }
      expect_op("]");
      return list;
    }
    if (skip_op("{")) {
      auto dict = make(Expr::Kind::dict, t.line);
      while (!is_op("}")) {
        dict->children.push_back(parse_expression(true));
        expect_op(":");
        dict->children.push_back(parse_expression(true));
        if (!skip_op(",")) break;
      }
      expect_op("}");
      return dict;
    }
    fail("unexpected " + describe(t) + " in an expression");
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(Expr::Kind::literal, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const int line = peek().line;
      if (skip_op(".")) {
        if (peek().type == Type::integer) {
          auto item = make(Expr::Kind::item, line);
          item->children.push_back(std::move(e));
          item->children.push_back(literal(Value::integer(std::strtoll(next().value.c_str(), nullptr, 10)), line));
          e = std::move(item);
        } else {
          auto attribute = make(Expr::Kind::attribute, line);
          attribute->name = expect_name();
          attribute->children.push_back(std::move(e));
          e = std::move(attribute);
        }
      } else if (skip_op("[")) {
        e = parse_subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), Expr::Kind::call, "");
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, int line) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int part = 0; part < 3; ++part) {
      if (!is_op(":") && !is_op("]")) parts[part] = parse_expression(true);
      if (part < 2 && skip_op(":")) {
        is_slice = true;
        continue;
      }
      break;
    }
    if (!is_slice && !parts[0]) fail("expected an index or a slice inside [], got " + describe(peek()));
    expect_op("]");
    if (!is_slice) {
      auto item = make(Expr::Kind::item, line);
      item->children.push_back(std::move(target));
      item->children.push_back(std::move(parts[0]));
      return item;
    }
    auto slice = make(Expr::Kind::slice, line);
    slice->children.push_back(std::move(target));
    for (auto& part : parts) slice->children.push_back(std::move(part));
    return slice;
  }

  // `target(args)` for calls; for filters and tests, `target` is the filtered value and the
  // arguments follow it.
  ExprPtr parse_call(ExprPtr target, Expr::Kind kind, const std::string& name) {
    auto call = make(kind, peek().line);
    call->name = name;
    call->children.push_back(std::move(target));
    if (!skip_op("(")) return call;
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (peek().type == Type::name && is_op("=", 1)) {
        const std::string keyword = next().value;
        next();
        call->keywords.emplace_back(keyword, parse_expression(true));
      } else {
        if (!call->keywords.empty()) fail("a positional argument follows a keyword argument");
        call->children.push_back(parse_expression(true));
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
    return call;
  }

  ExprPtr parse_filters(ExprPtr e, bool first_bar_done) {
    while (true) {
      if (first_bar_done || skip_op("|")) {
        first_bar_done = false;
        std::string name = expect_name();
        while (is_op(".") && peek(1).type == Type::name) {
          next();
          name += "." + next().value;
        }
        e = parse_call(std::move(e), Expr::Kind::filter, name);
      } else if (is_name("is")) {
        next();
        const bool negated = skip_name("not");
        const std::string name = expect_name();
        ExprPtr target = std::move(e);
        if (is_op("(")) {
          e = parse_call(std::move(target), Expr::Kind::test, name);
        } else {
          e = make(Expr::Kind::test, peek().line);
          e->name = name;
          e->children.push_back(std::move(target));
          // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
          const Token& t = peek();
          const bool starts_argument =
              (t.type == Type::name && t.value != "else" && t.value != "or" && t.value != "and" &&
               t.value != "if" && t.value != "is" && t.value != "in" && t.value != "not") ||
              t.type == Type::string || t.type == Type::integer || t.type == Type::floating || is_op("[") ||
              is_op("{");
          if (starts_argument) e->children.push_back(parse_postfix(parse_primary()));
        }
        e->negated = negated;
      } else if (is_op("(")) {
        e = parse_call(std::move(e), Expr::Kind::call, "");
      } else {
        return e;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::string& source) { return Parser(lex(source)).parse_all(); }

}  // namespace ranktune::tokenizer::jinja
