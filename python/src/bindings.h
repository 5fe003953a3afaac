#pragma once
// The parts of ranktune._core, one translation unit each (module.cpp calls them in order), and the
// conversions shared between them that need only pybind11. Files that pass tensors include
// common.h (LibTorch's Python casters, expensive to compile) instead of this alone.

#include <pybind11/pybind11.h>

#include "ranktune/data/examples.h"

#include <vector>

namespace ranktune::python {

void bind_models(pybind11::module_& m);     // CausalLM, ModelConfig, generation, safetensors
void bind_peft(pybind11::module_& m);       // LoraConfig bridge, PeftModel, TargetMatcher
void bind_linear(pybind11::module_& m);     // peft::Linear, ModuleTree (ranktune.torch)
void bind_tokenizer(pybind11::module_& m);  // Tokenizer
void bind_text(pybind11::module_& m);       // templates, answers, GSM8K data
void bind_train(pybind11::module_& m);      // RunConfig, Trainer, GSM8K evaluation
void bind_rl(pybind11::module_& m);         // GRPO advantages and loss (rl submodule)

// {"question", "rationale", "answer", "line"} dicts <-> data::Example (bind_text.cpp).
pybind11::dict example_to_dict(const data::Example& e);
data::Example example_from_dict(const pybind11::handle& item);
pybind11::list examples_to_list(const std::vector<data::Example>& examples);
std::vector<data::Example> examples_from_list(const pybind11::handle& items);

}  // namespace ranktune::python
