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

  // The one translation of C++ errors into Python. ranktune::Error is a user error (bad config
  // value, malformed file, missing tensor): ranktune.Error, a ValueError and a RuntimeError for code
  // that catches those. LibTorch's errors reach Python only through bad input to an entry point (a
  // tensor of the wrong shape or type): they become ranktune.Error too, or its subclasses that are
  // also the matching built-in type, never a bare RuntimeError/IndexError.
  static py::exception<ranktune::Error> error(m, "Error", py::make_tuple(py::handle(PyExc_ValueError), py::handle(PyExc_RuntimeError)));
  static py::exception<ranktune::Error> index_error(m, "IndexError", py::make_tuple(error, py::handle(PyExc_IndexError)));
  static py::exception<ranktune::Error> type_error(m, "TypeError", py::make_tuple(error, py::handle(PyExc_TypeError)));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ranktune::Error& e) {
      error(e.what());
    } catch (const c10::IndexError& e) {
      index_error(e.what_without_backtrace());
    } catch (const c10::TypeError& e) {
      type_error(e.what_without_backtrace());
    } catch (const c10::Error& e) {
      error(e.what_without_backtrace());
    } catch (const py::builtin_exception&) {
      throw;  // pybind11's own (StopIteration, KeyError, ...): its translator maps them
    } catch (const std::bad_alloc&) {
      throw;  // MemoryError
    } catch (const std::out_of_range& e) {
      index_error(e.what());
    } catch (const std::exception& e) {  // e.g. a shape error LibTorch raises as a plain std::runtime_error
      error(e.what());
    }
  });

  ranktune::python::bind_models(m);
  ranktune::python::bind_peft(m);
  ranktune::python::bind_linear(m);
  ranktune::python::bind_tokenizer(m);
  ranktune::python::bind_text(m);
  ranktune::python::bind_train(m);
  ranktune::python::bind_rl(m);
}
