// ranktune._core: the compiled half of the `ranktune` Python package. Only the module definition
// lives here; each part of the API is bound in its own file (bind_*.cpp).
//
// `import torch` must run before this module loads (ranktune/__init__.py does it): the tensor
// casters need torch's Python types registered.

#include "bindings.h"

#include "ranktune/core/error.h"
#include "ranktune/version.h"

#include <c10/util/Exception.h>

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "ranktune's C++ core (LoRA/DoRA adapters, models, tokenizers, trainer). Use the `ranktune` package.";
  m.attr("__version__") = RANKTUNE_VERSION;

  // ranktune::Error is a user error (bad config value, malformed file, missing tensor): it is a
  // ValueError, and a RuntimeError for code that catches that.
  static py::exception<ranktune::Error> error(m, "Error", py::make_tuple(py::handle(PyExc_ValueError), py::handle(PyExc_RuntimeError)));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ranktune::Error& e) {
      error(e.what());
    } catch (const c10::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what_without_backtrace());
    } catch (const c10::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  ranktune::python::bind_models(m);
  ranktune::python::bind_peft(m);
  ranktune::python::bind_linear(m);
  ranktune::python::bind_tokenizer(m);
  ranktune::python::bind_text(m);
  ranktune::python::bind_train(m);
}
