// Adapters (ranktune::peft): the LoraConfig bridge (JSON, PEFT's adapter_config.json form), the
// PeftModel and PEFT's target matching. peft::Linear itself is bound in bind_linear.cpp.

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/lora_config_fields.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>

namespace ranktune::python {
namespace {

using model::CausalLMImpl;
using peft::LoraConfig;
using peft::PeftModel;

std::shared_ptr<torch::nn::Module> as_module(const std::shared_ptr<CausalLMImpl>& model) {
  RANKTUNE_CHECK(model != nullptr, "the model is None");
  return std::static_pointer_cast<torch::nn::Module>(model);
}

py::dict counts_to_dict(const peft::ParameterCounts& c) {
  py::dict d;
  d["trainable"] = c.trainable;
  d["total"] = c.total;
  d["trainable_percent"] = c.trainable_percent();
  d["summary"] = c.summary();
  return d;
}

py::dict inject_report_to_dict(const peft::InjectReport& r) {
  py::dict d;
  d["adapter_name"] = r.adapter_name;
  d["adapted_modules"] = r.adapted_modules;
  d["modules_to_save"] = r.modules_to_save;
  d["parameters"] = counts_to_dict(r.parameters);
  return d;
}

}  // namespace

LoraConfig lora_config_from_json(const std::string& text) {
  LoraConfig c = LoraConfig::from_json(text, "LoraConfig");
  c.validate();
  return c;
}

py::dict adapter_options_to_dict(const peft::AdapterOptions& o) {
  py::dict d;
  d["r"] = o.r();
  d["lora_alpha"] = o.lora_alpha();
  d["lora_dropout"] = o.lora_dropout();
  d["use_rslora"] = o.use_rslora();
  d["use_dora"] = o.use_dora();
  d["init_lora_weights"] = o.init_lora_weights().to_string();
  d["scaling"] = o.scaling();
  return d;
}

void bind_peft(py::module_& m) {
  m.def(
      "lora_config_normalize", [](const std::string& text) { return lora_config_from_json(text).to_json(); }, py::arg("json"),
      "Parses and validates adapter_config.json text (errors name the field) and returns it as PEFT writes it.");
  m.def(
      "lora_config_fields",
      [] {
        py::list out;
        for (const auto& f : peft::lora_config_fields()) {
          py::dict d;
          d["name"] = f.name;
          d["kind"] = peft::to_string(f.kind);
          d["default_json"] = f.default_json();
          d["help"] = f.help;
          d["written"] = peft::to_string(f.written);
          d["choices"] = f.choices;
          d["recipe_key"] = f.is_recipe_key() ? py::object(py::str("adapter." + f.name)) : py::none();
          d["outside_recipes"] = f.outside_recipes;
          out.append(d);
        }
        return out;
      },
      "LoraConfig's field table (name, kind, default as JSON, help, when adapter_config.json has it, recipe "
      "key or why it is not one), in PEFT's order: the Python dataclass takes its defaults and help from it.");
  m.def(
      "lora_config_load", [](const std::string& path) { return LoraConfig::load(path).to_json(); }, py::arg("path"),
      "Reads `path` or `path`/adapter_config.json; returns its JSON text as PEFT writes it.");

  py::class_<PeftModel, std::shared_ptr<PeftModel>>(m, "PeftModel", "A model with named LoRA/DoRA adapters.")
      .def(py::init([](const std::shared_ptr<CausalLMImpl>& model, const std::string& config_json,
                       const std::string& adapter_name) {
             const LoraConfig config = lora_config_from_json(config_json);
             py::gil_scoped_release release;
             return std::make_shared<PeftModel>(as_module(model), config, adapter_name);
           }),
           py::arg("model"), py::arg("config_json"), py::arg("adapter_name") = "default")
      .def_static(
          "from_pretrained",
          [](const std::shared_ptr<CausalLMImpl>& model, const std::string& dir, const std::string& adapter_name,
             bool is_trainable) {
            py::gil_scoped_release release;
            return std::make_shared<PeftModel>(
                PeftModel::from_pretrained(as_module(model), dir, adapter_name, is_trainable));
          },
          py::arg("model"), py::arg("dir"), py::arg("adapter_name") = "default", py::arg("is_trainable") = false)
      .def(
          "add_adapter",
          [](PeftModel& self, const std::string& adapter_name, const std::string& config_json) {
            const LoraConfig config = lora_config_from_json(config_json);
            return inject_report_to_dict(self.add_adapter(adapter_name, config));
          },
          py::arg("adapter_name"), py::arg("config_json"))
      .def(
          "load_adapter",
          [](PeftModel& self, const std::string& dir, const std::string& adapter_name, bool is_trainable) {
            peft::AdapterLoadReport r;
            {
              py::gil_scoped_release release;
              r = self.load_adapter(dir, adapter_name, is_trainable);
            }
            py::dict d;
            d["adapted_modules"] = r.adapted_modules;
            d["loaded_parameters"] = r.loaded_parameters;
            return d;
          },
          py::arg("dir"), py::arg("adapter_name"), py::arg("is_trainable") = false)
      .def("save_pretrained", &PeftModel::save_pretrained, py::arg("dir"),
           py::arg("adapter_names") = std::vector<std::string>{}, py::call_guard<py::gil_scoped_release>())
      .def("set_adapter", py::overload_cast<const std::vector<std::string>&>(&PeftModel::set_adapter),
           py::arg("adapter_names"))
      .def_property_readonly("active_adapters", &PeftModel::active_adapters)
      .def("delete_adapter", &PeftModel::delete_adapter, py::arg("adapter_name"))
      .def_property_readonly("adapter_names", &PeftModel::adapter_names)
      .def(
          "config_json", [](const PeftModel& self, const std::string& name) { return self.config(name).to_json(); },
          py::arg("adapter_name"))
      .def("enable_adapters", &PeftModel::enable_adapters)
      .def("disable_adapters", &PeftModel::disable_adapters)
      .def_property_readonly("adapters_enabled", &PeftModel::adapters_enabled)
      .def("merge_adapter", &PeftModel::merge_adapter, py::arg("safe") = false,
           py::arg("adapter_names") = std::vector<std::string>{}, py::call_guard<py::gil_scoped_release>())
      .def("unmerge_adapter", &PeftModel::unmerge_adapter, py::call_guard<py::gil_scoped_release>())
      .def(
          "merge_and_unload", [](PeftModel& self, bool safe) { self.merge_and_unload(safe); }, py::arg("safe") = false,
          py::call_guard<py::gil_scoped_release>())
      .def("unload", [](PeftModel& self) { self.unload(); }, py::call_guard<py::gil_scoped_release>())
      .def(
          "add_weighted_adapter",
          [](PeftModel& self, const std::vector<std::string>& adapters, const std::vector<double>& weights,
             const std::string& adapter_name, const std::string& combination_type, std::optional<int64_t> svd_rank,
             std::optional<double> svd_clamp) {
            peft::WeightedAdapterOptions o;
            o.combination_type(peft::parse_combination_type(combination_type)).svd_rank(svd_rank).svd_clamp(svd_clamp);
            py::gil_scoped_release release;
            self.add_weighted_adapter(adapters, weights, adapter_name, o);
          },
          py::arg("adapters"), py::arg("weights"), py::arg("adapter_name"), py::arg("combination_type") = "svd",
          py::arg("svd_rank") = py::none(), py::arg("svd_clamp") = py::none())
      .def("trainable_parameters", [](const PeftModel& self) { return counts_to_dict(self.trainable_parameters()); });

  m.def(
      "count_parameters", [](const std::shared_ptr<CausalLMImpl>& model) { return counts_to_dict(peft::count_parameters(*model)); },
      py::arg("model"));

  py::class_<peft::TargetMatcher>(m, "TargetMatcher",
                                  "PEFT's target matching: which modules a LoraConfig adapts, with which r and alpha.")
      .def(py::init([](const std::string& config_json, const std::vector<std::string>& linear_names,
                       const std::string& output_head) {
             return peft::TargetMatcher(lora_config_from_json(config_json), linear_names, output_head);
           }),
           py::arg("config_json"), py::arg("linear_names") = std::vector<std::string>{}, py::arg("output_head") = "lm_head")
      .def("is_target", &peft::TargetMatcher::is_target, py::arg("name"))
      .def("is_excluded", &peft::TargetMatcher::is_excluded, py::arg("name"))
      .def("is_module_to_save", &peft::TargetMatcher::is_module_to_save, py::arg("name"))
      .def(
          "adapter_options_for",
          [](const peft::TargetMatcher& self, const std::string& name) { return adapter_options_to_dict(self.adapter_options_for(name)); },
          py::arg("name"));
}

}  // namespace ranktune::python
