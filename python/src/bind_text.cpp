// Text around the model: chain-of-thought templates (ranktune::prompt), answer extraction and
// comparison, tools in generation, and reasoning datasets (ranktune::data). No torch types: only
// pybind11.

#include "bindings.h"

#include "ranktune/core/error.h"
#include "ranktune/data/examples.h"
#include "ranktune/prompt/answer.h"
#include "ranktune/prompt/retriever.h"
#include "ranktune/prompt/template.h"
#include "ranktune/prompt/tools.h"

#include <pybind11/stl.h>

namespace ranktune::python {

namespace py = pybind11;
using prompt::PromptTemplate;

// ---- examples <-> dicts ------------------------------------------------------------------------------

py::dict example_to_dict(const data::Example& e) {
  py::dict d;
  d["question"] = e.question;
  d["rationale"] = e.rationale;
  d["answer"] = e.answer;
  if (e.line > 0) d["line"] = e.line;
  return d;
}

data::Example example_from_dict(const py::handle& item) {
  data::Example e;
  const py::dict d = py::reinterpret_borrow<py::dict>(item);
  e.question = d["question"].cast<std::string>();
  e.rationale = d.contains("rationale") ? d["rationale"].cast<std::string>() : std::string();
  e.answer = d["answer"].cast<std::string>();
  if (d.contains("line")) e.line = d["line"].cast<int64_t>();
  return e;
}

py::list examples_to_list(const std::vector<data::Example>& examples) {
  py::list out;
  for (const auto& e : examples) out.append(example_to_dict(e));
  return out;
}

std::vector<data::Example> examples_from_list(const py::handle& items) {
  std::vector<data::Example> out;
  for (const auto& item : items) out.push_back(example_from_dict(item));
  return out;
}

namespace {

py::tuple extraction_tuple(const prompt::Extraction& e) { return py::make_tuple(e.strict, e.flexible); }

py::list few_shot_list(const std::vector<prompt::FewShotExample>& examples) {
  py::list out;
  for (const auto& f : examples) {
    py::dict d;
    d["question"] = f.question;
    d["rationale"] = f.rationale;
    d["answer"] = f.answer;
    out.append(d);
  }
  return out;
}

// A Python callable as a tool: called with the call's arguments as keyword arguments; a str result
// is inserted as it is, anything else as its JSON. Its exception becomes the error result. The
// callable is released with the GIL held, wherever the last copy of the function dies.
prompt::ToolFunction python_tool(py::object callable) {
  std::shared_ptr<py::object> held(new py::object(std::move(callable)), [](py::object* o) {
    py::gil_scoped_acquire gil;
    delete o;
  });
  return [held](const std::string& arguments) -> std::string {
    py::gil_scoped_acquire gil;
    try {
      const py::module_ json = py::module_::import("json");
      const py::dict kwargs = json.attr("loads")(arguments);
      const py::object result = (*held)(**kwargs);
      if (py::isinstance<py::str>(result)) return result.cast<std::string>();
      return json.attr("dumps")(result).cast<std::string>();
    } catch (py::error_already_set& e) {
      throw Error(e.what());
    }
  };
}

}  // namespace

void bind_text(py::module_& m) {
  // ---- templates ---------------------------------------------------------------------------------------
  py::class_<PromptTemplate>(m, "PromptTemplate", "A chain-of-thought prompt template (a YAML file).")
      .def_static("load", &PromptTemplate::load, py::arg("name_or_path"))
      .def_static("parse", &PromptTemplate::parse, py::arg("yaml_text"), py::arg("source"))
      .def("render_prompt", &PromptTemplate::render_prompt, py::arg("question"))
      .def("render_response", &PromptTemplate::render_response, py::arg("rationale"), py::arg("answer"))
      .def("use_tokenizer", &PromptTemplate::use_tokenizer, py::arg("tokenizer"))
      .def_property_readonly("text_has_bos", &PromptTemplate::text_has_bos)
      .def_property_readonly("end_of_turn", &PromptTemplate::end_of_turn)
      .def_property_readonly("name", &PromptTemplate::name)
      .def_property_readonly("description", &PromptTemplate::description)
      .def_property_readonly("format", [](const PromptTemplate& t) { return prompt::to_string(t.format()); })
      .def_property_readonly("system", &PromptTemplate::system)
      .def_property_readonly("prompt", &PromptTemplate::prompt)
      .def_property_readonly("response", &PromptTemplate::response)
      .def_property_readonly("few_shot", [](const PromptTemplate& t) { return few_shot_list(t.few_shot()); })
      .def("exemplars_for", [](const PromptTemplate& t, const std::string& q) { return few_shot_list(t.exemplars_for(q)); },
           py::arg("question"))
      .def("context_for", &PromptTemplate::context_for, py::arg("question"))
      .def("with_fixed_exemplars", &PromptTemplate::with_fixed_exemplars)
      .def_property_readonly("retrieves_exemplars", &PromptTemplate::retrieves_exemplars)
      .def_property_readonly("retrieves_context", &PromptTemplate::retrieves_context)
      .def_property_readonly("shots", &PromptTemplate::shots)
      .def_property_readonly("stop", &PromptTemplate::stop)
      .def_property_readonly("answer_pattern", &PromptTemplate::answer_pattern)
      .def_property_readonly("format_pattern", &PromptTemplate::format_pattern)
      .def_property_readonly("tool_syntax", &PromptTemplate::tool_syntax)
      .def_property_readonly("source", &PromptTemplate::source);
  // ---- tools -------------------------------------------------------------------------------------------
  py::class_<prompt::ToolRegistry, std::shared_ptr<prompt::ToolRegistry>>(
      m, "ToolRegistry", "Tools a model's calls reach during generation, by name (docs/tools.md).")
      .def(py::init([](bool builtins) {
             return std::make_shared<prompt::ToolRegistry>(builtins ? prompt::ToolRegistry::with_builtins()
                                                                    : prompt::ToolRegistry());
           }),
           py::arg("builtins") = true, "With builtins: the calculator ({\"expression\": \"48/2\"} -> \"24\").")
      .def("add", [](prompt::ToolRegistry& self, const std::string& name, py::object fn) { self.add(name, python_tool(std::move(fn))); },
           py::arg("name"), py::arg("function"),
           "Adds a Python callable, called as function(**arguments); a non-str result is inserted as JSON.")
      .def("names", &prompt::ToolRegistry::names)
      .def("__contains__", &prompt::ToolRegistry::contains)
      .def("call",
           [](const prompt::ToolRegistry& self, const std::string& name, const std::string& arguments_json) {
             prompt::ToolResult r;
             {
               py::gil_scoped_release release;  // a Python tool takes the GIL itself
               r = self.call(name, arguments_json);
             }
             return py::make_tuple(r.ok, r.text);
           },
           py::arg("name"), py::arg("arguments_json") = "{}", "(ok, text): the result, or {\"error\": ...}.");
  py::class_<prompt::ToolUse>(m, "ToolUse", "Answers a template's tool calls in generated text (docs/tools.md).")
      .def(py::init([](const std::string& syntax, std::shared_ptr<prompt::ToolRegistry> registry,
                       const std::string& response, int64_t max_calls, int64_t max_result_chars) {
             prompt::ToolLimits limits;
             limits.max_calls = max_calls;
             limits.max_result_chars = max_result_chars;
             return prompt::ToolUse(prompt::parse_tool_syntax(syntax), response, std::move(registry), limits);
           }),
           py::arg("syntax"), py::arg("registry"), py::arg("response"), py::arg("max_calls") = 32,
           py::arg("max_result_chars") = 2000)
      .def_static(
          "for_template",
          [](const PromptTemplate& tmpl, std::shared_ptr<prompt::ToolRegistry> registry, int64_t max_calls,
             int64_t max_result_chars, bool calculator) -> std::optional<prompt::ToolUse> {
            prompt::ToolLimits limits;
            limits.max_calls = max_calls;
            limits.max_result_chars = max_result_chars;
            return prompt::ToolUse::for_template(tmpl, std::move(registry), limits, calculator);
          },
          py::arg("template"), py::arg("registry"), py::arg("max_calls") = 32, py::arg("max_result_chars") = 2000,
          py::arg("calculator") = false)
      .def("respond",
           [](const prompt::ToolUse& self, const std::string& text) {
             py::gil_scoped_release release;
             return self.respond(text);
           },
           py::arg("generated_text"))
      .def("without_responses", &prompt::ToolUse::without_responses, py::arg("text"))
      .def_property_readonly(
          "syntax",
          [](const prompt::ToolUse& t) { return t.syntax() == prompt::ToolSyntax::json ? "json" : "calculator"; },
          "The call syntax answered: \"calculator\" (GSM8K's <<expr=) or \"json\" (<tool_call>{...}</tool_call>).")
      .def_property_readonly("response", &prompt::ToolUse::response,
                             "The text inserted after a call, with {result} standing for the tool's output.");
  m.def("available_templates", &prompt::available_templates);

  // ---- retrieval ---------------------------------------------------------------------------------------
  py::class_<prompt::Bm25Index>(m, "BM25Index", "Okapi BM25 over a list of texts (docs/retrieval.md).")
      .def(py::init([](std::vector<std::string> documents, double k1, double b, const std::string& cache_file) {
             py::gil_scoped_release release;
             return prompt::Bm25Index::load_or_build(std::move(documents), cache_file, prompt::Bm25Options{k1, b});
           }),
           py::arg("documents"), py::arg("k1") = 1.5, py::arg("b") = 0.75, py::arg("cache_file") = "")
      .def(
          "search",
          [](const prompt::Bm25Index& index, const std::string& query, int64_t k) {
            py::list out;
            for (const auto& hit : index.search(query, k)) out.append(py::make_tuple(hit.index, hit.score));
            return out;
          },
          py::arg("query"), py::arg("k"))
      .def("score", &prompt::Bm25Index::score, py::arg("query"), py::arg("index"))
      .def("document", &prompt::Bm25Index::document, py::arg("index"))
      .def("__len__", &prompt::Bm25Index::size)
      .def_property_readonly("source", [](const prompt::Bm25Index& i) { return prompt::to_string(i.source()); });
  m.def("bm25_tokens", [](const std::string& text) { return prompt::bm25_tokens(text); }, py::arg("text"));
  m.def("template_search_path", &prompt::template_search_path);

  // ---- answers -----------------------------------------------------------------------------------------
  m.def(
      "extract", [](const std::string& completion, const PromptTemplate& t) { return extraction_tuple(prompt::extract(completion, t)); },
      py::arg("completion"), py::arg("template"));
  m.def(
      "extract_with_pattern",
      [](const std::string& completion, const std::string& pattern) { return extraction_tuple(prompt::extract(completion, pattern)); },
      py::arg("completion"), py::arg("answer_pattern"));
  m.def("extract_answer", &prompt::extract_answer, py::arg("text"));
  m.def("cut_at_stop", &prompt::cut_at_stop, py::arg("text"), py::arg("stop"));
  m.def("normalize_number", &prompt::normalize_number, py::arg("text"));
  m.def("parse_number", &prompt::parse_number, py::arg("text"));
  m.def("answers_match", &prompt::answers_match, py::arg("predicted"), py::arg("gold"));

  // ---- data --------------------------------------------------------------------------------------------
  m.def(
      "load_jsonl",
      [](const std::string& path, bool gsm8k_answer, const std::string& question_field, const std::string& answer_field,
         const std::string& rationale_field, bool strip_calculator, int64_t limit) {
        data::LoadOptions o;
        o.gsm8k_answer = gsm8k_answer;
        o.question_field = question_field;
        o.answer_field = answer_field;
        o.rationale_field = rationale_field;
        o.strip_calculator = strip_calculator;
        o.limit = limit;
        std::vector<data::Example> examples;
        {
          py::gil_scoped_release release;
          examples = data::load_jsonl(path, o);
        }
        return examples_to_list(examples);
      },
      py::arg("path"), py::arg("gsm8k_answer") = true, py::arg("question_field") = "question",
      py::arg("answer_field") = "answer", py::arg("rationale_field") = "rationale", py::arg("strip_calculator") = false,
      py::arg("limit") = 0);
  m.def("split_gsm8k_answer", &data::split_gsm8k_answer, py::arg("answer_text"));
  m.def("strip_calculator_annotations", &data::strip_calculator_annotations, py::arg("text"));
  m.def(
      "split_validation",
      [](const py::list& examples, int64_t count, uint64_t seed, double fraction) {
        auto [kept, held_out] = data::split_validation(examples_from_list(examples), count, seed, fraction);
        return py::make_tuple(examples_to_list(kept), examples_to_list(held_out));
      },
      py::arg("examples"), py::arg("count"), py::arg("seed"), py::arg("fraction") = 0.0);
}

}  // namespace ranktune::python
