#pragma once
// The calculator of the GSM8K paper (Cobbe et al. 2021, "Training Verifiers to Solve Math Word
// Problems"): solutions carry annotations like "<<48/2=24>>24"; while sampling, when the model has
// written "<<48/2=", the calculator supplies "24>>" instead of letting the model do arithmetic.
//
//   std::string text = generated;
//   if (auto insert = calculator_completion(text)) text += *insert;   // "...<<48/2=" + "24>>"

#include <optional>
#include <string>
#include <string_view>

namespace ranktune::prompt {

// Evaluates numbers ("12", "0.5", ".5", "1,000"), + - * /, parentheses and unary minus, in double
// precision with the usual precedence. Like the Python eval() of GSM8K's calculator it also takes a
// unary plus ("+30+46") and floor division ("560//10"), both found in GSM8K's annotations. Anything
// else (letters, "%", "x", "**": no powers, so no 9**9**9), an empty or unbalanced expression,
// division by zero, a non-finite result or nesting deeper than 100 gives nullopt. It is a parser,
// never eval().
std::optional<double> evaluate_arithmetic(std::string_view expression);

// A result as GSM8K annotations write it: integers without ".0" ("24", "-3"), other values as a
// short decimal with at most 6 decimals and no trailing zeros ("0.2", "2.8", "0.333333"), so that
// floating-point noise (2.8000000000000003, 1959.9999999999998) does not show.
std::string format_calculator_result(double value);

// When `generated_text` ends with an unfinished annotation "<<expr=" (optionally followed by
// spaces), the expression ("48/2"); nullopt otherwise. The calculator tool syntax (tools.h) uses it.
std::optional<std::string> pending_calculator_expression(const std::string& generated_text);

// When `generated_text` ends with an unfinished annotation "<<expr=" (optionally followed by
// spaces), the text to append: the formatted result and ">>" ("24>>"). nullopt when the text does
// not end that way or the expression does not evaluate.
std::optional<std::string> calculator_completion(const std::string& generated_text);

}  // namespace ranktune::prompt
