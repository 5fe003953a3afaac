// Rendering a parsed template: statements write to the output, expressions evaluate to Values.
// Scopes follow jinja2: a for loop's body gets a fresh scope per iteration (a `set` inside it is
// gone at the next iteration and after the loop; namespaces carry state out), `if` has no scope of
// its own, a macro runs in a scope over the one it was defined in (names resolved at call time).
#include "jinja.h"

#include "jinja_builtins.h"
#include "ranktune/core/error.h"
#include "ranktune/core/utf8.h"

#include <algorithm>

namespace ranktune::tokenizer::jinja {
namespace {

constexpr size_t kMaxOutput = size_t{64} << 20;
constexpr int kMaxCallDepth = 64;

struct Frame {
  std::shared_ptr<Frame> parent;
  std::vector<std::pair<std::string, Value>> vars;

  Value* local(const std::string& name) {
    for (auto& [key, value] : vars) {
      if (key == name) return &value;
    }
    return nullptr;
  }
  void assign(const std::string& name, Value value) {
    if (Value* existing = local(name)) {
      *existing = std::move(value);
    } else {
      vars.emplace_back(name, std::move(value));
    }
  }
  Value lookup(const std::string& name) {
    for (Frame* f = this; f != nullptr; f = f->parent.get()) {
      if (Value* v = f->local(name)) return *v;
    }
    return Value::undefined("'" + name + "' is undefined");
  }
};
using FramePtr = std::shared_ptr<Frame>;

FramePtr child_of(const FramePtr& parent) {
  auto frame = std::make_shared<Frame>();
  frame->parent = parent;
  return frame;
}

enum class Flow { normal, break_loop, continue_loop };

// Unpacks `value` into `targets` (one target takes the value whole).
void bind_targets(Frame& frame, const std::vector<std::string>& targets, const Value& value) {
  if (targets.size() == 1) {
    frame.assign(targets[0], value);
    return;
  }
  const List items = value.iterate();
  if (items.size() != targets.size()) {
    throw Error(items.size() > targets.size()
                    ? "too many values to unpack (expected " + std::to_string(targets.size()) + ")"
                    : "not enough values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                          std::to_string(items.size()) + ")");
  }
  for (size_t i = 0; i < targets.size(); ++i) frame.assign(targets[i], items[i]);
}

class Renderer {
 public:
  Renderer(std::shared_ptr<const Body> root, const std::string* top_output, std::vector<std::pair<size_t, size_t>>* spans)
      : root_(std::move(root)), top_output_(top_output), spans_(spans) {}

  Flow render(const Body& body, const FramePtr& frame, std::string& out) {
    for (const NodePtr& node : body) {
      const Flow flow = render_node(*node, frame, out);
      if (flow != Flow::normal) return flow;
      if (out.size() > kMaxOutput) throw Error("the rendered text exceeds 64 MiB");
    }
    return Flow::normal;
  }

 private:
  Flow render_node(const Node& node, const FramePtr& frame, std::string& out) {
    try {
      return render_node_inner(node, frame, out);
    } catch (const Error& e) {
      if (e.context().line >= 0) throw;
      throw e.with_context(ErrorContext{"", "", node.line});
    }
  }

  Flow render_node_inner(const Node& node, const FramePtr& frame, std::string& out) {
    switch (node.kind) {
      case Node::Kind::text: out += node.text; return Flow::normal;
      case Node::Kind::output: out += eval(*node.expr, frame).str(); return Flow::normal;
      case Node::Kind::if_:
        for (const auto& [condition, body] : node.branches) {
          if (eval(*condition, frame).truthy()) return render(body, frame, out);
        }
        return render(node.else_body, frame, out);
      case Node::Kind::for_: return render_for(node, frame, out);
      case Node::Kind::set: {
        const Value value = eval(*node.expr, frame);
        if (node.attribute.empty()) {
          bind_targets(*frame, node.targets, value);
          return Flow::normal;
        }
        const Value target = frame->lookup(node.targets[0]);
        if (!target.is_namespace()) throw Error("cannot assign attribute on non-namespace object");
        Dict& entries = target.mutable_entries();
        for (auto& entry : entries) {
          if (entry.first.is_string() && entry.first.as_string() == node.attribute) {
            entry.second = value;
            return Flow::normal;
          }
        }
        entries.emplace_back(Value::string(node.attribute), value);
        return Flow::normal;
      }
      case Node::Kind::set_block: {
        std::string text;
        render(node.body, frame, text);
        frame->assign(node.targets[0], Value::string(text));
        return Flow::normal;
      }
      case Node::Kind::macro: frame->assign(node.text, make_macro(node, frame)); return Flow::normal;
      case Node::Kind::filter_block: {
        std::string text;
        render(node.body, frame, text);
        out += apply_filter_chain(*node.expr, Value::string(text), frame).str();
        return Flow::normal;
      }
      case Node::Kind::break_: return Flow::break_loop;
      case Node::Kind::continue_: return Flow::continue_loop;
      case Node::Kind::scope: {  // {% generation %}: its body, and where that went
        const size_t before = out.size();
        const Flow flow = render(node.body, frame, out);
        // transformers: start = len(top-level output before the block), end = start + len(its text).
        // A block inside a captured text (set, macro, filter) counts from the top level's length.
        const size_t start = &out == top_output_ ? before : top_output_->size();
        if (spans_ != nullptr) spans_->emplace_back(start, start + out.size() - before);
        return flow;
      }
    }
    return Flow::normal;
  }

  Flow render_for(const Node& node, const FramePtr& frame, std::string& out) {
    const Value iterable = eval(*node.expr, frame);
    List items = iterable.iterate();
    if (node.filter) {
      List kept;
      for (const Value& item : items) {
        FramePtr scope = child_of(frame);
        bind_targets(*scope, node.targets, item);
        if (eval(*node.filter, scope).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      FramePtr scope = child_of(frame);
      bind_targets(*scope, node.targets, items[static_cast<size_t>(i)]);
      Dict loop = {
          {Value::string("index"), Value::integer(i + 1)},  {Value::string("index0"), Value::integer(i)},
          {Value::string("revindex"), Value::integer(n - i)}, {Value::string("revindex0"), Value::integer(n - i - 1)},
          {Value::string("first"), Value::boolean(i == 0)},   {Value::string("last"), Value::boolean(i == n - 1)},
          {Value::string("length"), Value::integer(n)},       {Value::string("depth"), Value::integer(1)},
          {Value::string("depth0"), Value::integer(0)}};
      if (i > 0) loop.emplace_back(Value::string("previtem"), items[static_cast<size_t>(i - 1)]);
      if (i + 1 < n) loop.emplace_back(Value::string("nextitem"), items[static_cast<size_t>(i + 1)]);
      loop.emplace_back(Value::string("cycle"), Value::callable("cycle", [i](Args& args) {
                          if (args.positional.empty()) throw Error("no items for cycling given");
                          return args.positional[static_cast<size_t>(i) % args.positional.size()];
                        }));
      scope->assign("loop", Value::dict(std::move(loop)));
      if (render(node.body, scope, out) == Flow::break_loop) break;
    }
    if (n == 0) return render(node.else_body, child_of(frame), out);
    return Flow::normal;
  }

  Value make_macro(const Node& node, const FramePtr& defined_in) {
    const Node* macro = &node;
    std::shared_ptr<const Body> keep_alive = root_;
    Renderer* self = this;
    // The frame is held weakly: the macro is stored in it (a strong reference would be a cycle).
    std::weak_ptr<Frame> weak_scope = defined_in;
    return Value::callable(node.text, [macro, keep_alive, weak_scope, self](Args& args) {
      if (self->depth_ >= kMaxCallDepth) throw Error("macro '" + macro->text + "': calls nested too deeply");
      FramePtr defined_in = weak_scope.lock();
      if (!defined_in) throw Error("macro '" + macro->text + "' is called after the scope it was defined in ended");
      FramePtr scope = child_of(defined_in);
      const auto& params = macro->parameters;
      if (args.positional.size() > params.size()) {
        throw Error("macro '" + macro->text + "' takes not more than " + std::to_string(params.size()) + " argument(s)");
      }
      for (const auto& keyword : args.keyword) {
        const std::string& key = keyword.first;  // not a structured binding: the lambda captures it
        const bool known = std::any_of(params.begin(), params.end(), [&](const MacroParameter& p) { return p.name == key; });
        if (!known) throw Error("macro '" + macro->text + "' was invoked with an unknown keyword argument '" + key + "'");
      }
      for (size_t i = 0; i < params.size(); ++i) {
        const MacroParameter& p = params[i];
        const auto keyword = std::find_if(args.keyword.begin(), args.keyword.end(), [&](const auto& kv) { return kv.first == p.name; });
        if (i < args.positional.size()) {
          if (keyword != args.keyword.end()) throw Error("macro '" + macro->text + "' got multiple values for argument '" + p.name + "'");
          scope->assign(p.name, args.positional[i]);
        } else if (keyword != args.keyword.end()) {
          scope->assign(p.name, keyword->second);
        } else if (p.default_value) {
          scope->assign(p.name, self->eval(*p.default_value, scope));
        } else {
          scope->assign(p.name, Value::undefined("parameter '" + p.name + "' was not provided"));
        }
      }
      std::string text;
      ++self->depth_;
      try {
        self->render(macro->body, scope, text);
      } catch (...) {
        --self->depth_;
        throw;
      }
      --self->depth_;
      return Value::string(text);
    });
  }

  Args eval_args(const Expr& call, const FramePtr& frame) {
    Args args;
    for (size_t i = 1; i < call.children.size(); ++i) args.positional.push_back(eval(*call.children[i], frame));
    for (const auto& [key, value] : call.keywords) args.keyword.emplace_back(key, eval(*value, frame));
    return args;
  }

  // {% filter %} blocks: the chain's innermost operand is the block's text.
  Value apply_filter_chain(const Expr& e, const Value& input, const FramePtr& frame) {
    if (e.kind != Expr::Kind::filter) return input;
    const Value inner = apply_filter_chain(*e.children[0], input, frame);
    Args args = eval_args(e, frame);
    return apply_filter(e.name, inner, args);
  }

 public:
  Value eval(const Expr& e, const FramePtr& frame) {
    try {
      return eval_inner(e, frame);
    } catch (const Error& error) {
      if (error.context().line >= 0) throw;
      throw error.with_context(ErrorContext{"", "", e.line});
    }
  }

 private:
  Value eval_inner(const Expr& e, const FramePtr& frame) {
    switch (e.kind) {
      case Expr::Kind::literal: return e.value;
      case Expr::Kind::name: return frame->lookup(e.name);
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        List items;
        for (const ExprPtr& child : e.children) items.push_back(eval(*child, frame));
        return Value::list(std::move(items), e.kind == Expr::Kind::tuple);
      }
      case Expr::Kind::dict: {
        Dict entries;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = eval(*e.children[i], frame);
          Value value = eval(*e.children[i + 1], frame);
          auto existing = std::find_if(entries.begin(), entries.end(), [&](const auto& kv) { return equal(kv.first, key); });
          if (existing != entries.end()) {
            existing->second = std::move(value);
          } else {
            entries.emplace_back(std::move(key), std::move(value));
          }
        }
        return Value::dict(std::move(entries));
      }
      case Expr::Kind::attribute: return get_attribute(eval(*e.children[0], frame), e.name);
      case Expr::Kind::item: return get_item(eval(*e.children[0], frame), eval(*e.children[1], frame));
      case Expr::Kind::slice: {
        const Value object = eval(*e.children[0], frame);
        Value parts[3];
        for (int i = 0; i < 3; ++i) parts[i] = e.children[i + 1] ? eval(*e.children[i + 1], frame) : Value::none();
        return slice(object, parts[0], parts[1], parts[2]);
      }
      case Expr::Kind::call: {
        const Value callee = eval(*e.children[0], frame);
        callee.require_defined();
        if (!callee.is_callable()) throw Error("'" + callee.type_name().substr(0, callee.type_name().find(' ')) + "' object is not callable");
        Args args = eval_args(e, frame);
        return callee.call(args);
      }
      case Expr::Kind::filter: {
        const Value input = eval(*e.children[0], frame);
        Args args = eval_args(e, frame);
        return apply_filter(e.name, input, args);
      }
      case Expr::Kind::test: {
        const Value input = eval(*e.children[0], frame);
        Args args = eval_args(e, frame);
        return Value::boolean(apply_test(e.name, input, args) != e.negated);
      }
      case Expr::Kind::unary: {
        const Value operand = eval(*e.children[0], frame);
        if (e.name == "not") return Value::boolean(!operand.truthy());
        operand.require_defined();
        if (!operand.is_number()) throw Error("bad operand type for unary " + e.name + ": '" + operand.type_name() + "'");
        if (e.name == "+") return operand.kind() == Value::Kind::floating ? operand : Value::integer(operand.as_int());
        if (operand.kind() == Value::Kind::floating) return Value::floating(-operand.as_double());
        if (operand.as_int() == INT64_MIN) throw Error("integer overflow (ranktune's template integers are 64-bit)");
        return Value::integer(-operand.as_int());
      }
      case Expr::Kind::binary: {
        Value left = eval(*e.children[0], frame);
        if (e.name == "and") return left.truthy() ? eval(*e.children[1], frame) : left;
        if (e.name == "or") return left.truthy() ? left : eval(*e.children[1], frame);
        return binary_operator(e.name, left, eval(*e.children[1], frame));
      }
      case Expr::Kind::compare: {
        Value left = eval(*e.children[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.children[i + 1], frame);
          const std::string& op = e.ops[i];
          bool result;
          if (op == "==") {
            result = equal(left, right);
          } else if (op == "!=") {
            result = !equal(left, right);
          } else if (op == "<") {
            result = less(left, right);
          } else if (op == "<=") {
            result = !less(right, left);
          } else if (op == ">") {
            result = less(right, left);
          } else if (op == ">=") {
            result = !less(left, right);
          } else if (op == "in") {
            result = contains(right, left);
          } else {
            result = !contains(right, left);
          }
          if (!result) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::conditional:
        if (eval(*e.children[0], frame).truthy()) return eval(*e.children[1], frame);
        if (e.children.size() > 2) return eval(*e.children[2], frame);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
    }
    return Value();
  }

  std::shared_ptr<const Body> root_;
  const std::string* top_output_;                    // the text render() returns
  std::vector<std::pair<size_t, size_t>>* spans_;   // {% generation %} blocks, when asked
  int depth_ = 0;
};

// Unknown filters and tests are errors when the template is read, as jinja2 reports them.
void check_names(const Expr& e) {
  if (e.kind == Expr::Kind::filter) {
    const auto& names = supported_filters();
    if (std::find(names.begin(), names.end(), e.name) == names.end()) {
      throw Error("the Jinja filter '" + e.name + "' is not supported", ErrorContext{"", "", e.line});
    }
  }
  if (e.kind == Expr::Kind::test) {
    const auto& names = supported_tests();
    if (std::find(names.begin(), names.end(), e.name) == names.end()) {
      throw Error("the Jinja test '" + e.name + "' is not supported", ErrorContext{"", "", e.line});
    }
  }
  for (const ExprPtr& child : e.children) {
    if (child) check_names(*child);
  }
  for (const auto& keyword : e.keywords) check_names(*keyword.second);
}

void check_names(const Body& body) {
  for (const NodePtr& node : body) {
    if (node->expr) check_names(*node->expr);
    if (node->filter) check_names(*node->filter);
    for (const auto& [condition, branch] : node->branches) {
      check_names(*condition);
      check_names(branch);
    }
    for (const MacroParameter& p : node->parameters) {
      if (p.default_value) check_names(*p.default_value);
    }
    check_names(node->body);
    check_names(node->else_body);
  }
}

}  // namespace

Template::Template(const std::string& source, ErrorContext origin) : origin_(std::move(origin)) {
  try {
    const size_t invalid = find_invalid_utf8(source);
    if (invalid != std::string::npos) throw Error("the template is not valid UTF-8 (byte " + std::to_string(invalid) + ")");
    auto body = std::make_shared<Body>(parse_template(source));
    check_names(*body);
    body_ = std::move(body);
  } catch (const Error& e) {
    throw e.with_context(origin_);
  }
}

std::string Template::render(const Dict& variables, std::vector<std::pair<size_t, size_t>>* generation_spans) const {
  auto globals = std::make_shared<Frame>();
  for (auto& [key, value] : global_functions()) globals->assign(key.as_string(), value);
  FramePtr top = child_of(globals);
  for (const auto& [key, value] : variables) top->assign(key.str(), value);
  std::string out;
  try {
    Renderer renderer(body_, &out, generation_spans);
    renderer.render(*body_, top, out);
  } catch (const Error& e) {
    throw e.with_context(origin_);
  }
  return out;
}

}  // namespace ranktune::tokenizer::jinja
