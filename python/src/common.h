#pragma once
// For the binding files that pass tensors: pybind11 with LibTorch's torch.Tensor <-> at::Tensor
// casters (tensors cross the boundary shared, autograd intact).
//
// Every binding that runs model code (forward, generate, training, evaluation, loading) releases
// the GIL: the work is pure C++, and other Python threads keep running.

#include "bindings.h"
#include "ranktune/core/dtype.h"
#include "ranktune/core/interrupt.h"

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

// Runs `work` with the GIL released and lets Python's signal handlers run between generated tokens,
// so Ctrl-C (a notebook's "interrupt kernel") stops it with the KeyboardInterrupt Python raises.
template <typename Work>
auto run_interruptible(Work&& work) -> decltype(work()) {
  bool signalled = false;
  ScopedInterruptCheck check([&signalled] {
    py::gil_scoped_acquire gil;
    signalled = PyErr_CheckSignals() != 0;
    return signalled;
  });
  try {
    py::gil_scoped_release release;
    return work();
  } catch (...) {
    if (signalled) throw py::error_already_set();  // the handler's exception, e.g. KeyboardInterrupt
    throw;
  }
}

}  // namespace ranktune::python
