#pragma once
// For the binding files that pass tensors: pybind11 with LibTorch's torch.Tensor <-> at::Tensor
// casters (tensors cross the boundary shared, autograd intact).
//
// Every binding that runs model code (forward, generate, training, evaluation, loading) releases
// the GIL: the work is pure C++, and other Python threads keep running.

#include "bindings.h"
#include "ranktune/core/dtype.h"

#include <torch/csrc/utils/pybind.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <string>

namespace ranktune::peft {
class LoraConfig;
struct AdapterOptions;
}  // namespace ranktune::peft

namespace ranktune::python {

namespace py = pybind11;

// None -> an undefined tensor (the C++ API's "absent").
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.value_or(at::Tensor()); }

// adapter_config.json text -> a validated LoraConfig; errors name the field (bind_peft.cpp).
peft::LoraConfig lora_config_from_json(const std::string& text);
// One adapter's resolved settings as a dict: r, lora_alpha, lora_dropout, use_rslora, use_dora,
// init_lora_weights and the scaling they give (bind_peft.cpp).
py::dict adapter_options_to_dict(const peft::AdapterOptions& options);

}  // namespace ranktune::python
