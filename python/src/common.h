#pragma once
// For the binding files that pass tensors: pybind11 with LibTorch's torch.Tensor <-> at::Tensor
// casters (tensors cross the boundary shared, autograd intact).
//
// Every binding that runs model code (forward, generate, training, evaluation, loading) releases
// the GIL: the work is pure C++, and other Python threads keep running.

#include "bindings.h"

#include <torch/csrc/utils/pybind.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <string>

namespace ranktune::python {

namespace py = pybind11;

// "float32", "torch.float32", "fp32", "bfloat16", ... -> dtype. Throws ranktune::Error otherwise.
at::ScalarType parse_dtype(const std::string& name);
// torch.float32 -> "float32".
std::string dtype_name(at::ScalarType dtype);

}  // namespace ranktune::python
