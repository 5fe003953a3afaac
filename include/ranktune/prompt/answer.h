#pragma once
// Finding the final answer in a completion, and comparing answers.
//
//   Extraction e = extract(completion, tmpl);        // strict: the template's format; flexible: any
//   bool ok = e.strict && answers_match(*e.strict, "72");
//
// Which occurrence wins. When a completion states an answer more than once, the LAST occurrence
// wins, in both modes, after the completion has been cut at the template's first stop string (the
// overload taking a PromptTemplate cuts; the one taking a bare pattern does not). Earlier
// occurrences are intermediate text: a markdown heading "#### 1. Find the total", a quoted
// format, a self-correction ("The answer is 5. Wait... The answer is 6."); text the model writes
// after its answer (a new "Question: ...") is removed by the stop strings. lm-evaluation-harness
// takes the first strict match and the last flexible match after cutting at its `until` strings;
// on completions that state the answer once, both rules agree.
//
// Answers come back normalised: a number as normalize_number gives it ("1,000.00" → "1000"),
// anything else trimmed ("yes").

#include <optional>
#include <string>
#include <vector>

namespace ranktune::prompt {

class PromptTemplate;

struct Extraction {
  // The answer in the template's own format (its answer_pattern), or nullopt.
  std::optional<std::string> strict;
  // The answer in any known format (#### N, "The answer is N", \boxed{N}, <answer>N</answer>),
  // the last one in the text; else the last number in the text; else nullopt.
  std::optional<std::string> flexible;
};

// `answer_pattern` must have exactly one capture group (throws ranktune::Error otherwise).
Extraction extract(const std::string& completion, const std::string& answer_pattern);
// Cuts `completion` at the template's first stop string, then uses its answer_pattern.
Extraction extract(const std::string& completion, const PromptTemplate& tmpl);

// The flexible answer of `text` (the name the Python package uses).
std::optional<std::string> extract_answer(const std::string& text);

// `text` up to (not including) the earliest occurrence of any of `stop`.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stop);

// Canonical text of a number written the way people and models write answers, or the trimmed
// input when it is not one. Removes: thousands separators ("1,000"), currency signs ($ € £ ¥ ₹,
// also "\$"), a percent sign, up to three trailing unit words ("dollars", "cm", "km/h"), a
// trailing period, a leading "+", LaTeX wrappers (\text{...}, "$...$"). Writes integers without
// a decimal point, decimals without trailing zeros ("5.00" → "5", "2.50" → "2.5", ".5" → "0.5"),
// and evaluates simple fractions and mixed numbers ("3/4" → "0.75", "1 1/2" → "1.5",
// "\frac{3}{4}" → "0.75"). Negative numbers keep their sign ("-5", "−5" → "-5"; "-0" → "0").
std::string normalize_number(const std::string& text);

// The value of normalize_number(text), or nullopt when `text` is not a number.
std::optional<double> parse_number(const std::string& text);

// True when both are numbers equal after normalisation (relative tolerance 1e-9, so 1/3 and
// 0.3333333333 match but 0.33 does not), or, when either is not a number, when the texts match
// ignoring case, surrounding space and a trailing period.
bool answers_match(const std::string& predicted, const std::string& gold);

}  // namespace ranktune::prompt
