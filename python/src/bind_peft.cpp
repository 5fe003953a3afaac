// Adapters (ranktune::peft): the LoraConfig bridge (JSON, PEFT's adapter_config.json form), the
// PeftModel, PEFT's target matching, and the LoRA/DoRA kernels with their hand-written backward
// passes (used by ranktune.torch.inject on ordinary torch.nn.Modules).

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/functional.h"
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

LoraConfig config_from_json(const std::string& text) {
  LoraConfig c = LoraConfig::from_json(text, "LoraConfig");
  c.validate();
  return c;
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

at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.value_or(at::Tensor()); }

}  // namespace

void bind_peft(py::module_& m) {
  m.def(
      "lora_config_normalize", [](const std::string& text) { return config_from_json(text).to_json(); }, py::arg("json"),
      "Parses and validates adapter_config.json text (errors name the field) and returns it as PEFT writes it.");
  m.def(
      "lora_config_load", [](const std::string& path) { return LoraConfig::load(path).to_json(); }, py::arg("path"),
      "Reads `path` or `path`/adapter_config.json; returns its JSON text as PEFT writes it.");

  py::class_<PeftModel, std::shared_ptr<PeftModel>>(m, "PeftModel", "A model with named LoRA/DoRA adapters.")
      .def(py::init([](const std::shared_ptr<CausalLMImpl>& model, const std::string& config_json,
                       const std::string& adapter_name) {
             const LoraConfig config = config_from_json(config_json);
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
            const LoraConfig config = config_from_json(config_json);
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

  m.def("peft_adapter_key", &peft::peft_adapter_key, py::arg("module"), py::arg("kind"),
        "PEFT's on-disk key of an adapter tensor: kind is lora_A, lora_B or lora_magnitude_vector.");
  m.def("peft_parameter_key", &peft::peft_parameter_key, py::arg("parameter"),
        "PEFT's on-disk key of a full parameter saved with an adapter (modules_to_save, biases).");
  m.def(
      "count_parameters", [](const std::shared_ptr<CausalLMImpl>& model) { return counts_to_dict(peft::count_parameters(*model)); },
      py::arg("model"));

  py::class_<peft::TargetMatcher>(m, "TargetMatcher",
                                  "PEFT's target matching: which modules a LoraConfig adapts, with which r and alpha.")
      .def(py::init([](const std::string& config_json, const std::vector<std::string>& linear_names,
                       const std::string& output_head) {
             return peft::TargetMatcher(config_from_json(config_json), linear_names, output_head);
           }),
           py::arg("config_json"), py::arg("linear_names") = std::vector<std::string>{}, py::arg("output_head") = "lm_head")
      .def("is_target", &peft::TargetMatcher::is_target, py::arg("name"))
      .def("is_excluded", &peft::TargetMatcher::is_excluded, py::arg("name"))
      .def("is_module_to_save", &peft::TargetMatcher::is_module_to_save, py::arg("name"))
      .def(
          "adapter_options_for",
          [](const peft::TargetMatcher& self, const std::string& name) { return adapter_options_to_dict(self.adapter_options_for(name)); },
          py::arg("name"));

  // ---- kernels (custom autograd) -----------------------------------------------------------------------
  // Lambdas rather than function pointers, so defaulted parameters added in C++ keep this binding valid.
  m.def(
      "lora_update",
      [](const at::Tensor& result, const at::Tensor& x, const at::Tensor& A, const at::Tensor& B, double scaling) {
        return peft::functional::lora_update(result, x, A, B, scaling);
      },
      py::arg("result"), py::arg("x"), py::arg("lora_A"), py::arg("lora_B"), py::arg("scaling"),
      py::call_guard<py::gil_scoped_release>(),
      "result + s * (x A^T) B^T, with a backward that keeps only x and x A^T.");
  m.def(
      "dora_update",
      [](const std::optional<at::Tensor>& rest, const at::Tensor& base, const at::Tensor& x, const at::Tensor& A,
         const at::Tensor& B, const at::Tensor& magnitude, const at::Tensor& weight_norm, double scaling) {
        return peft::functional::dora_update(or_undefined(rest), base, x, A, B, magnitude, weight_norm, scaling);
      },
      py::arg("rest"), py::arg("base"), py::arg("x"), py::arg("lora_A"), py::arg("lora_B"), py::arg("magnitude"),
      py::arg("weight_norm"), py::arg("scaling"), py::call_guard<py::gil_scoped_release>(),
      "rest + (m / n) * (base + s * (x A^T) B^T); base = W x from the caller, n the detached weight norm.");
  m.def(
      "dora_weight_norm",
      [](const at::Tensor& weight, const at::Tensor& row_sq_norm, const at::Tensor& A, const at::Tensor& B,
         double scaling, double eps) { return peft::functional::dora_weight_norm(weight, row_sq_norm, A, B, scaling, eps); },
      py::arg("weight"), py::arg("weight_row_sq_norm"), py::arg("lora_A"), py::arg("lora_B"), py::arg("scaling"),
      py::arg("eps") = 1e-12, py::call_guard<py::gil_scoped_release>(),
      "||W + s B A|| per output row from the low-rank factors (no out x in temporary), without gradient.");
}

}  // namespace ranktune::python
