// ranktune::peft::Linear for Python, and a module tree that stands for an ordinary torch.nn.Module
// so that the C++ inject, mark_trainable and PEFT writer/reader act on it. ranktune.torch builds
// both; every adapter computation (init, scaling, dtype rule, forward, backward, DoRA's norm,
// merging) is the C++ layer's.
//
// Tensors cross shared, never copied: a torch.nn.Parameter handed in is the very tensor the C++
// layer registers, and comes back to Python as the same object.

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/peft/adapter_io.h"
#include "ranktune/peft/inject.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/lora_config.h"
#include "ranktune/peft/modules_to_save.h"

#include <torch/csrc/autograd/python_variable.h>

#include <deque>
#include <sstream>

namespace ranktune::python {
namespace {

using peft::LinearImpl;

std::string init_text(const py::handle& init) {
  if (py::isinstance<py::bool_>(init)) return init.cast<bool>() ? "true" : "false";
  return py::str(init).cast<std::string>();
}

py::tuple adapter_weights(const LinearImpl& layer, const std::string& name) {
  const peft::Adapter& a = layer.adapter(name);
  return py::make_tuple(a.lora_A, a.lora_B, a.magnitude.defined() ? py::cast(a.magnitude) : py::none());
}

// ---- the module tree ---------------------------------------------------------------------------

// A torch::nn::Module tree with a torch module's qualified names: an adaptable layer is a
// peft::Linear at its name, any other parameter a shared tensor at its name, and the modules in
// between plain containers. The C++ functions that take a model take this root.
// A module of the tree that is not an adaptable layer: its parameters are shared tensors, and it
// lets the C++ modules_to_save code make copies of them (SubstitutableParameters) — the copies of
// a transient tree carry values between a file and the torch module's own copies.
class TreeNode : public torch::nn::Module, public peft::SubstitutableParameters {
 public:
  TreeNode() : torch::nn::Module("Module") {}
  void add_parameter(const std::string& name, const at::Tensor& t) {
    members_.emplace_back(name, register_parameter(name, t, t.requires_grad()));
  }
  std::vector<std::pair<std::string, torch::Tensor*>> parameter_members() override {
    std::vector<std::pair<std::string, torch::Tensor*>> out;
    for (auto& [name, t] : members_) out.emplace_back(name, &t);
    return out;
  }

 private:
  std::deque<std::pair<std::string, torch::Tensor>> members_;  // stable addresses
};

class ModuleTree {
 public:
  explicit ModuleTree(const std::vector<std::pair<std::string, py::object>>& entries)
      : root_(std::make_shared<TreeNode>()) {
    for (const auto& [name, value] : entries) {
      const auto dot = name.rfind('.');
      TreeNode& parent = container(dot == std::string::npos ? "" : name.substr(0, dot));
      const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
      RANKTUNE_CHECK(!leaf.empty(), "module tree: empty name in '", name, "'");
      RANKTUNE_CHECK(!parent.named_children().contains(leaf) && !parent.named_parameters(false).contains(leaf),
                     "module tree: '", name, "' given twice");
      if (py::isinstance<LinearImpl>(value)) {
        parent.register_module(leaf, value.cast<std::shared_ptr<LinearImpl>>());
      } else if (THPVariable_Check(value.ptr())) {
        const at::Tensor t = THPVariable_Unpack(value.ptr());
        parent.add_parameter(leaf, t);
      } else {
        throw Error(c10::str("module tree: '", name, "' is neither a ranktune Linear nor a tensor"));
      }
    }
  }

  torch::nn::Module& root() { return *root_; }

 private:
  TreeNode& container(const std::string& path) {
    TreeNode* node = root_.get();
    size_t start = 0;
    while (start < path.size()) {
      const size_t end = std::min(path.find('.', start), path.size());
      const std::string part = path.substr(start, end - start);
      const auto children = node->named_children();
      if (const auto* found = children.find(part)) {
        node = dynamic_cast<TreeNode*>(found->get());
        RANKTUNE_CHECK(node != nullptr, "module tree: '", path, "' is inside an adaptable layer");
      } else {
        node = node->register_module(part, std::make_shared<TreeNode>()).get();
      }
      start = end + 1;
    }
    return *node;
  }

  std::shared_ptr<TreeNode> root_;
};

// `source`'s adapters (weights copied, state as in `source`) on `target`, which has none of them.
void copy_adapters(LinearImpl& target, const LinearImpl& source) {
  RANKTUNE_CHECK(!source.merged(), "cannot copy merged adapters (",
                 source.merged_adapters().front(), "): unmerge first");
  for (const std::string& name : source.adapter_names()) {
    const peft::Adapter& a = source.adapter(name);
    target.add_adapter_from_weights(name, a.options, a.lora_A, a.lora_B, a.magnitude);
    const peft::Adapter& copy = target.adapter(name);
    copy.lora_A.set_requires_grad(a.lora_A.requires_grad());
    copy.lora_B.set_requires_grad(a.lora_B.requires_grad());
    if (a.magnitude.defined()) copy.magnitude.set_requires_grad(a.magnitude.requires_grad());
  }
  target.set_active_adapters(source.active_adapters());
  target.set_adapters_enabled(source.adapters_enabled());
}

py::dict inject_report_to_dict(const peft::InjectReport& r) {
  py::dict d;
  d["adapted_modules"] = r.adapted_modules;
  d["modules_to_save"] = r.modules_to_save;
  return d;
}

}  // namespace

void bind_linear(py::module_& m) {
  py::class_<LinearImpl, std::shared_ptr<LinearImpl>>(
      m, "Linear",
      "ranktune::peft::Linear around existing base tensors (shared): LoRA/DoRA adapters with C++ forward and "
      "backward passes. ranktune.torch.LoraLinear is the torch.nn.Module over it.")
      .def(py::init([](const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool fan_in_fan_out) {
             return std::make_shared<LinearImpl>(weight, or_undefined(bias), fan_in_fan_out);
           }),
           py::arg("weight"), py::arg("bias") = py::none(), py::arg("fan_in_fan_out") = false)
      .def_property_readonly("in_features", [](const LinearImpl& self) { return self.options.in_features(); })
      .def_property_readonly("out_features", [](const LinearImpl& self) { return self.options.out_features(); })
      .def_property_readonly("fan_in_fan_out", [](const LinearImpl& self) { return self.options.fan_in_fan_out(); })
      .def_property_readonly("weight", [](const LinearImpl& self) { return self.weight; })
      .def_property_readonly("bias", [](const LinearImpl& self) -> py::object {
        return self.bias.defined() ? py::cast(self.bias) : py::none();
      })
      .def(
          "add_adapter",
          [](LinearImpl& self, const std::string& name, int64_t r, double lora_alpha, double lora_dropout,
             const py::object& init_lora_weights, bool use_rslora, bool use_dora) {
            const auto options = peft::AdapterOptions()
                                     .r(r)
                                     .lora_alpha(lora_alpha)
                                     .lora_dropout(lora_dropout)
                                     .use_rslora(use_rslora)
                                     .use_dora(use_dora)
                                     .init_lora_weights(peft::LoraInit::parse(init_text(init_lora_weights)));
            py::gil_scoped_release release;
            self.add_adapter(name, options);
          },
          py::arg("adapter_name"), py::arg("r"), py::arg("lora_alpha"), py::arg("lora_dropout") = 0.0,
          py::arg("init_lora_weights") = true, py::arg("use_rslora") = false, py::arg("use_dora") = false,
          "Adds and initialises an adapter (active).")
      .def("delete_adapter", &LinearImpl::delete_adapter, py::arg("adapter_name"))
      .def("has_adapter", &LinearImpl::has_adapter, py::arg("adapter_name"))
      .def_property_readonly("adapter_names", &LinearImpl::adapter_names)
      .def(
          "adapter_options",
          [](const LinearImpl& self, const std::string& name) {
            const peft::Adapter& a = self.adapter(name);
            py::dict d = adapter_options_to_dict(a.options);
            d["dtype"] = dtype_name(a.lora_A.scalar_type());
            return d;
          },
          py::arg("adapter_name"), "r, lora_alpha, lora_dropout, use_rslora, use_dora, init_lora_weights, scaling, dtype.")
      .def("adapter_weights", &adapter_weights, py::arg("adapter_name"), "(lora_A, lora_B, magnitude or None).")
      .def(
          "share_adapter_weights",
          [](LinearImpl& self, const std::string& name, const at::Tensor& A, const at::Tensor& B,
             const std::optional<at::Tensor>& magnitude) {
            self.share_adapter_weights(name, A, B, or_undefined(magnitude));
          },
          py::arg("adapter_name"), py::arg("lora_A"), py::arg("lora_B"), py::arg("magnitude") = py::none(),
          "Makes these tensors (same shape, dtype, device) the adapter's weights, shared.")
      .def("copy_adapters_from", &copy_adapters, py::arg("source"),
           "Adds copies of `source`'s adapters (weights, active set, trainable flags); refused when merged.")
      .def_property_readonly("active_adapters", &LinearImpl::active_adapters)
      .def("set_active_adapters", &LinearImpl::set_active_adapters, py::arg("adapter_names"))
      .def_property_readonly("adapters_enabled", &LinearImpl::adapters_enabled)
      .def("set_adapters_enabled", &LinearImpl::set_adapters_enabled, py::arg("enabled"),
           py::call_guard<py::gil_scoped_release>())
      .def("merge", &LinearImpl::merge, py::arg("safe") = false, py::arg("adapter_names") = std::vector<std::string>{},
           py::call_guard<py::gil_scoped_release>())
      .def("unmerge", &LinearImpl::unmerge, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("merged", &LinearImpl::merged)
      .def_property_readonly("merged_adapters", &LinearImpl::merged_adapters)
      .def("delta_weight", &LinearImpl::delta_weight, py::arg("adapter_name"), py::call_guard<py::gil_scoped_release>(),
           "s * B A in the base weight's layout.")
      .def_property_readonly("training", [](const LinearImpl& self) { return self.is_training(); })
      .def(
          "train", [](LinearImpl& self, bool mode) { self.train(mode); }, py::arg("mode") = true,
          "Training mode turns adapter dropout on.")
      .def(
          "forward", [](LinearImpl& self, const at::Tensor& x) { return self.forward(x); }, py::arg("x"),
          py::call_guard<py::gil_scoped_release>())
      .def("__repr__", [](const LinearImpl& self) {
        std::ostringstream out;
        self.pretty_print(out);
        return out.str();
      });

  py::class_<ModuleTree>(m, "ModuleTree",
                         "A C++ module tree standing for a torch.nn.Module: adaptable layers (ranktune Linear) and "
                         "other parameters (shared tensors) at their qualified names.")
      .def(py::init<const std::vector<std::pair<std::string, py::object>>&>(), py::arg("entries"))
      .def(
          "inject",
          [](ModuleTree& self, const std::string& config_json, const std::string& adapter_name,
             const std::string& output_head) {
            const peft::LoraConfig config = lora_config_from_json(config_json);
            peft::InjectReport report;
            {
              py::gil_scoped_release release;
              report = peft::inject(self.root(), config, adapter_name, peft::InjectOptions().output_head(output_head));
            }
            return inject_report_to_dict(report);
          },
          py::arg("config_json"), py::arg("adapter_name"), py::arg("output_head"))
      .def(
          "mark_trainable",
          [](ModuleTree& self, const std::string& config_json, const std::vector<std::string>& active) {
            peft::mark_trainable(self.root(), lora_config_from_json(config_json), active);
          },
          py::arg("config_json"), py::arg("active_adapters"))
      .def(
          "set_active_adapters",
          [](ModuleTree& self, const std::vector<std::string>& names) { peft::set_active_adapters(self.root(), names); },
          py::arg("adapter_names"))
      .def(
          "save_adapter",
          [](ModuleTree& self, const std::string& config_json, const std::string& adapter_name, const std::string& dir,
             const std::map<std::string, at::Tensor>& saved_copies) {
            const peft::LoraConfig config = lora_config_from_json(config_json);
            py::gil_scoped_release release;
            if (config.modules_to_save()) {
              // The tree holds the originals: give it copies, then the torch module's trained values.
              peft::add_saved_modules(self.root(), config, adapter_name);
              at::NoGradGuard no_grad;
              for (auto& [name, copy] : peft::saved_module_tensors(self.root(), adapter_name)) {
                const auto found = saved_copies.find(name);
                RANKTUNE_CHECK(found != saved_copies.end(), "modules_to_save: no trained copy of '", name,
                               "' for adapter '", adapter_name, "'");
                copy.copy_(found->second);
              }
            }
            peft::save_adapter(self.root(), config, adapter_name, dir);
          },
          py::arg("config_json"), py::arg("adapter_name"), py::arg("dir"),
          py::arg("saved_copies") = std::map<std::string, at::Tensor>{},
          "Writes the adapter; `saved_copies` are the modules_to_save copies' tensors by qualified name.")
      .def(
          "saved_module_tensors",
          [](ModuleTree& self, const std::string& adapter_name) {
            return peft::saved_module_tensors(self.root(), adapter_name);
          },
          py::arg("adapter_name"), "The modules_to_save copies of `adapter_name` (after load_adapter), by name.")
      .def(
          "load_adapter",
          [](ModuleTree& self, const std::string& dir, const std::string& adapter_name, bool is_trainable,
             const std::string& output_head) {
            peft::AdapterLoadReport r;
            {
              py::gil_scoped_release release;
              r = peft::load_adapter(self.root(), dir, adapter_name, is_trainable,
                                     peft::InjectOptions().output_head(output_head));
            }
            py::dict d;
            d["config_json"] = r.config.to_json();
            d["adapted_modules"] = r.adapted_modules;
            d["loaded_parameters"] = r.loaded_parameters;
            return d;
          },
          py::arg("dir"), py::arg("adapter_name"), py::arg("is_trainable"), py::arg("output_head"))
      .def(
          "named_parameters",
          [](ModuleTree& self) {
            std::vector<std::pair<std::string, at::Tensor>> out;
            for (const auto& item : self.root().named_parameters()) out.emplace_back(item.key(), item.value());
            return out;
          },
          "(qualified name, tensor) as the C++ functions see them.");
}

}  // namespace ranktune::python
