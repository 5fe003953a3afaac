// Tokenizers (ranktune::tokenizer): tokenizer.json BPE and SentencePiece models with Hugging
// Face's ids. No torch types cross here, so this file includes only pybind11.

#include "bindings.h"

#include "ranktune/tokenizer/tokenizer.h"

#include <pybind11/stl.h>

#include <utility>
#include <variant>
#include <vector>

namespace ranktune::python {

namespace py = pybind11;
using tokenizer::Tokenizer;

void bind_tokenizer(py::module_& m) {
  py::class_<Tokenizer>(m, "Tokenizer", "Text <-> token ids (tokenizer.json or tokenizer.model).")
      .def_static("from_pretrained", &Tokenizer::from_pretrained, py::arg("path"),
                  py::call_guard<py::gil_scoped_release>())
      .def("encode", &Tokenizer::encode, py::arg("text"), py::arg("add_special_tokens") = false,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "encode_batch",
          [](const Tokenizer& self, const std::vector<std::string>& texts, bool add_special_tokens) {
            std::vector<std::vector<int64_t>> out;
            out.reserve(texts.size());
            for (const auto& t : texts) out.push_back(self.encode(t, add_special_tokens));
            return out;
          },
          py::arg("texts"), py::arg("add_special_tokens") = false, py::call_guard<py::gil_scoped_release>())
      .def("decode", &Tokenizer::decode, py::arg("ids"), py::arg("skip_special_tokens") = false,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "decode_batch",
          [](const Tokenizer& self, const std::vector<std::vector<int64_t>>& batch, bool skip_special_tokens) {
            std::vector<std::string> out;
            out.reserve(batch.size());
            for (const auto& ids : batch) out.push_back(self.decode(ids, skip_special_tokens));
            return out;
          },
          py::arg("batch"), py::arg("skip_special_tokens") = false, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("bos_token_id", &Tokenizer::bos_token_id)
      .def_property_readonly("eos_token_id", &Tokenizer::eos_token_id)
      .def_property_readonly("pad_token_id", &Tokenizer::pad_token_id)
      .def("token_to_id", &Tokenizer::token_to_id, py::arg("token"))
      .def("id_to_token", &Tokenizer::id_to_token, py::arg("id"))
      .def("is_special", &Tokenizer::is_special, py::arg("id"))
      .def_property_readonly("chat_template_names", &Tokenizer::chat_template_names)
      .def("chat_template", &Tokenizer::chat_template, py::arg("name_or_template") = "", py::arg("with_tools") = false)
      .def(
          "apply_chat_template",
          // The conversation, tools, documents and variables arrive as JSON text (python/ranktune/
          // tokenization.py writes it with json.dumps, which keeps dict order).
          // With `generation_spans`, (text, [(begin, end) byte ranges of {% generation %} blocks]).
          [](const Tokenizer& self, const std::string& conversation_json, bool add_generation_prompt,
             bool continue_final_message, const std::string& chat_template, const std::string& tools_json,
             const std::string& documents_json, const std::string& variables_json,
             bool generation_spans) -> std::variant<std::string, std::pair<std::string, std::vector<std::pair<size_t, size_t>>>> {
            tokenizer::ChatTemplateOptions options;
            std::vector<std::pair<size_t, size_t>> spans;
            if (generation_spans) options.generation_spans = &spans;
            options.add_generation_prompt = add_generation_prompt;
            options.continue_final_message = continue_final_message;
            options.chat_template = chat_template;
            options.tools_json = tools_json;
            options.documents_json = documents_json;
            options.variables_json = variables_json;
            std::string text = self.apply_chat_template(conversation_json, options);
            if (!generation_spans) return text;
            return std::make_pair(std::move(text), std::move(spans));
          },
          py::arg("conversation_json"), py::arg("add_generation_prompt") = false,
          py::arg("continue_final_message") = false, py::arg("chat_template") = "", py::arg("tools_json") = "",
          py::arg("documents_json") = "", py::arg("variables_json") = "", py::arg("generation_spans") = false,
          py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("kind", &Tokenizer::kind)
      .def_property_readonly("source", &Tokenizer::source);
}

}  // namespace ranktune::python
