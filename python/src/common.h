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

namespace ranktune::python {

namespace py = pybind11;

}  // namespace ranktune::python
