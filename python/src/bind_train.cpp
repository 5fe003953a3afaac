// Training and evaluation (ranktune::train, ranktune::eval): the RunConfig (YAML recipes, validated
// key by key), the Trainer with Python callbacks, and GSM8K evaluation.

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/eval/gsm8k_eval.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"
#include "ranktune/prompt/template.h"
#include "ranktune/prompt/tools.h"
#include "ranktune/tokenizer/tokenizer.h"
#include "ranktune/train/config.h"
#include "ranktune/train/grpo.h"
#include "ranktune/train/metrics.h"
#include "ranktune/train/trainer.h"

#include <yaml-cpp/yaml.h>

namespace ranktune::python {
namespace {

using train::RunConfig;
using train::Trainer;

// YAML (as RunConfig::to_yaml writes it) -> Python objects. Scalars are typed the way YAML 1.2's
// core schema reads them (null, booleans, integers, floats, else strings).
py::object yaml_to_python(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return py::none();
    case YAML::NodeType::Sequence: {
      py::list out;
      for (const auto& item : n) out.append(yaml_to_python(item));
      return out;
    }
    case YAML::NodeType::Map: {
      py::dict out;
      for (const auto& item : n) out[py::str(item.first.as<std::string>())] = yaml_to_python(item.second);
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string s = n.Scalar();
      if (n.Tag() == "!") return py::str(s);  // quoted: a string whatever it looks like
      if (s == "true" || s == "True") return py::bool_(true);
      if (s == "false" || s == "False") return py::bool_(false);
      if (s == "~" || s == "null") return py::none();
      try {
        size_t used = 0;
        const long long i = std::stoll(s, &used);
        if (used == s.size()) return py::int_(i);
      } catch (const std::exception&) {
      }
      try {
        size_t used = 0;
        const double d = std::stod(s, &used);
        if (used == s.size()) return py::float_(d);
      } catch (const std::exception&) {
      }
      return py::str(s);
    }
  }
  return py::none();
}

py::dict train_result_to_dict(const train::TrainResult& r) {
  py::dict d;
  d["status"] = r.status;
  d["signal"] = r.signal;
  d["steps"] = r.steps;
  d["first_loss"] = r.first_loss;
  d["last_loss"] = r.last_loss;
  d["seconds"] = r.seconds;
  d["output_dir"] = r.output_dir;
  return d;
}

py::dict eval_summary_to_dict(const eval::EvalSummary& s) {
  py::dict d;
  d["questions"] = s.questions;
  d["accuracy_strict"] = s.accuracy_strict;
  d["accuracy_flexible"] = s.accuracy_flexible;
  d["format_rate"] = s.format_rate;
  if (s.majority_accuracy) d["accuracy_majority"] = *s.majority_accuracy;
  for (const auto& [k, v] : s.pass_at_k) d[py::str("pass_at_" + std::to_string(k))] = v;
  d["generated_tokens"] = s.generated_tokens;
  d["seconds"] = s.seconds;
  return d;
}

// A Python callable kept by C++: released with the GIL held, whoever drops the last reference.
std::shared_ptr<py::object> keep_python_object(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
}

// What a Python Trainer/GRPOTrainer passes to its C++ trainer; the GSM8K evaluator scores the run.
train::TrainerInputs trainer_inputs(const RunConfig& config, std::shared_ptr<model::CausalLMImpl> model,
                                    std::shared_ptr<peft::PeftModel> peft_model, const std::optional<tokenizer::Tokenizer>& tok,
                                    const py::object& train_examples, const py::object& eval_examples) {
  train::TrainerInputs inputs;
  inputs.model = std::move(model);
  inputs.peft_model = std::move(peft_model);
  if (tok) inputs.tokenizer = std::make_shared<const tokenizer::Tokenizer>(*tok);
  if (!train_examples.is_none()) inputs.train_examples = examples_from_list(train_examples);
  if (!eval_examples.is_none()) inputs.eval_examples = examples_from_list(eval_examples);
  inputs.evaluator = eval::make_gsm8k_evaluator(config.eval.options);
  return inputs;
}

// `fn(metrics: dict)` for every metrics row of a C++ trainer. An exception in it stops the run (the
// Python wrapper catches its callbacks' errors itself; this is the last line).
template <typename T>
void add_metrics_callback(T& self, py::function fn) {
  auto callback = keep_python_object(std::move(fn));
  T* trainer = &self;
  self.add_callback([callback, trainer](const train::MetricsRow& row) {
    py::gil_scoped_acquire gil;
    try {
      py::dict d;
      d["step"] = row.step;
      for (const auto& [k, v] : row.values) d[py::str(k)] = v;
      (*callback)(d);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("ranktune trainer callback");
      trainer->request_stop();
    }
  });
}

// A Python reward `fn(prompts=, completions=, question=, answer=, completion_length=)` returning one
// float or None per completion (TRL's reward functions: the dataset's columns as keyword arguments).
train::RewardFunction python_reward(std::string name, py::object fn) {
  auto callable = keep_python_object(std::move(fn));
  return {name, [callable, name](const train::RewardBatch& b) {
            py::gil_scoped_acquire gil;
            try {
              py::list questions, answers, lengths;
              for (size_t i = 0; i < b.completions.size(); ++i) {
                questions.append(b.examples[i]->question);
                answers.append(b.examples[i]->answer);
                lengths.append(b.completion_lengths[i]);
              }
              const py::object out = (*callable)(py::arg("prompts") = py::cast(b.prompts),
                                                 py::arg("completions") = py::cast(b.completions),
                                                 py::arg("question") = questions, py::arg("answer") = answers,
                                                 py::arg("completion_length") = lengths);
              train::RewardScores scores;
              for (const py::handle item : out) {
                scores.push_back(item.is_none() ? std::nullopt : std::optional<double>(item.cast<double>()));
              }
              return scores;
            } catch (py::error_already_set& e) {
              throw Error("reward function '" + name + "' raised " + e.what());
            } catch (const py::cast_error& e) {
              throw Error("reward function '" + name + "' must return a list of float or None per completion");
            }
          }};
}

}  // namespace

void bind_train(py::module_& m) {
  py::class_<RunConfig>(m, "RunConfig", "A training/evaluation recipe (docs/config.md), every key validated.")
      .def_static("parse", &RunConfig::parse, py::arg("yaml_text"), py::arg("source"),
                  py::arg("overrides") = std::vector<std::string>{})
      .def_static("load", &RunConfig::load, py::arg("path"), py::arg("overrides") = std::vector<std::string>{})
      .def_static("documentation", &RunConfig::documentation)
      .def("to_yaml", &RunConfig::to_yaml)
      .def("to_dict", [](const RunConfig& c) { return yaml_to_python(YAML::Load(c.to_yaml())); })
      .def("adapter_config_json", [](const RunConfig& c) { return c.adapter_config().to_json(); },
           "The LoraConfig the trainer attaches for adapter.* (JSON), as `ranktune train` does.")
      .def_readonly("source", &RunConfig::source);

  m.def(
      "recipe_sets_key",
      [](const std::string& yaml_text, const std::string& dotted_key) {
        // yaml-cpp's Node::operator= writes into the tree, so walk with reset() (rebinding) only.
        YAML::Node node;
        node.reset(YAML::Load(yaml_text));
        size_t start = 0;
        while (true) {
          if (!node.IsMap()) return false;
          const size_t dot = dotted_key.find('.', start);
          const std::string part = dotted_key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
          const YAML::Node child = static_cast<const YAML::Node&>(node)[part];
          if (!child.IsDefined()) return false;
          if (dot == std::string::npos) return !child.IsNull();
          node.reset(child);
          start = dot + 1;
        }
      },
      py::arg("yaml_text"), py::arg("key"), "True when the YAML text sets `key` (a dotted path) to a non-null value.");

  py::class_<Trainer>(m, "Trainer", "ranktune's trainer (train::Trainer) with inputs given from Python.")
      .def(py::init([](RunConfig config, std::shared_ptr<model::CausalLMImpl> model,
                       std::shared_ptr<peft::PeftModel> peft_model, std::optional<tokenizer::Tokenizer> tok,
                       const py::object& train_examples, const py::object& eval_examples) {
             train::TrainerInputs inputs =
                 trainer_inputs(config, std::move(model), std::move(peft_model), tok, train_examples, eval_examples);
             return std::make_unique<Trainer>(std::move(config), std::move(inputs));
           }),
           py::arg("config"), py::arg("model") = nullptr, py::arg("peft_model") = nullptr,
           py::arg("tokenizer") = py::none(), py::arg("train_examples") = py::none(),
           py::arg("eval_examples") = py::none())
      .def("setup", &Trainer::setup, py::call_guard<py::gil_scoped_release>())
      .def("train",
           [](Trainer& self) {
             // Steps run under the trainer's own signal handling (a checkpoint at the next step);
             // generation (evaluation) also stops between tokens on Ctrl-C.
             return train_result_to_dict(run_interruptible([&] { return self.train(); }));
           })
      .def("evaluate", [](Trainer& self) { return run_interruptible([&] { return self.evaluate(); }); })
      .def("add_callback", &add_metrics_callback<Trainer>, py::arg("callback"),
           "Calls `callback(metrics: dict)` (with 'step') for every metrics row.")
      .def("request_stop", &Trainer::request_stop)
      .def("set_progress_bar", &Trainer::set_progress_bar, py::arg("enabled"))
      .def_property_readonly("model", &Trainer::model)
      .def_property_readonly("peft_model", &Trainer::peft_model)
      .def_property_readonly("tokenizer", [](const Trainer& self) { return self.tokenizer(); })
      .def_property_readonly("total_steps", &Trainer::total_steps)
      .def_property_readonly("config", &Trainer::config, py::return_value_policy::copy);

  py::class_<train::GrpoTrainer>(m, "GrpoTrainer", "ranktune's GRPO trainer (train::GrpoTrainer) with inputs from Python.")
      .def(py::init([](RunConfig config, std::shared_ptr<model::CausalLMImpl> model,
                       std::shared_ptr<peft::PeftModel> peft_model, std::optional<tokenizer::Tokenizer> tok,
                       const py::object& train_examples, const py::object& eval_examples, const py::list& rewards) {
             train::TrainerInputs inputs =
                 trainer_inputs(config, std::move(model), std::move(peft_model), tok, train_examples, eval_examples);
             std::vector<train::RewardFunction> custom;
             for (const py::handle item : rewards) {
               const auto pair = item.cast<py::tuple>();
               custom.push_back(python_reward(pair[0].cast<std::string>(), py::reinterpret_borrow<py::object>(pair[1])));
             }
             return std::make_unique<train::GrpoTrainer>(std::move(config), std::move(inputs), std::move(custom));
           }),
           py::arg("config"), py::arg("model") = nullptr, py::arg("peft_model") = nullptr,
           py::arg("tokenizer") = py::none(), py::arg("train_examples") = py::none(),
           py::arg("eval_examples") = py::none(), py::arg("rewards") = py::list(),
           "`rewards`: (name, callable) pairs, scored after the recipe's grpo.reward_funcs.")
      .def("setup", &train::GrpoTrainer::setup, py::call_guard<py::gil_scoped_release>())
      .def("train",
           [](train::GrpoTrainer& self) {
             const train::GrpoResult r = run_interruptible([&] { return self.train(); });
             py::dict d = train_result_to_dict(r);
             d["first_reward"] = r.first_reward;
             d["last_reward"] = r.last_reward;
             return d;
           })
      .def("add_callback", &add_metrics_callback<train::GrpoTrainer>, py::arg("callback"),
           "Calls `callback(metrics: dict)` (with 'step') for every metrics row.")
      .def("request_stop", &train::GrpoTrainer::request_stop)
      .def("set_progress_bar", &train::GrpoTrainer::set_progress_bar, py::arg("enabled"))
      .def_property_readonly("model", &train::GrpoTrainer::model)
      .def_property_readonly("peft_model", &train::GrpoTrainer::peft_model)
      .def_property_readonly("tokenizer", [](const train::GrpoTrainer& self) { return self.tokenizer(); })
      .def_property_readonly("total_steps", &train::GrpoTrainer::total_steps)
      .def_property_readonly("config", &train::GrpoTrainer::config, py::return_value_policy::copy);

  m.def(
      "evaluate_gsm8k",
      [](model::CausalLMImpl& model, const tokenizer::Tokenizer& tok, const prompt::PromptTemplate& tmpl,
         const py::list& examples, int64_t batch_size, int64_t max_new_tokens, double repetition_penalty,
         int64_t no_repeat_ngram_size, bool greedy, int64_t samples, double temperature, double top_p, int64_t top_k,
         const std::vector<int64_t>& pass_at_k, bool calculator, uint64_t seed, bool progress,
         const std::string& predictions_path, std::shared_ptr<prompt::ToolRegistry> tools) {
        const std::vector<data::Example> questions = examples_from_list(examples);
        eval::EvalOptions o;
        o.batch_size = batch_size;
        o.max_new_tokens = max_new_tokens;
        o.repetition_penalty = repetition_penalty;
        o.no_repeat_ngram_size = no_repeat_ngram_size;
        o.greedy = greedy;
        o.samples = samples;
        o.temperature = temperature;
        o.top_p = top_p;
        o.top_k = top_k;
        o.pass_at_k = pass_at_k;
        o.calculator = calculator;
        o.seed = seed;
        o.progress = progress;
        const eval::EvalSummary s = run_interruptible(
            [&] { return eval::evaluate_gsm8k(model, tok, tmpl, questions, o, predictions_path, tools); });
        return eval_summary_to_dict(s);
      },
      py::arg("model"), py::arg("tokenizer"), py::arg("template"), py::arg("examples"), py::arg("batch_size") = 8,
      py::arg("max_new_tokens") = 256, py::arg("repetition_penalty") = 1.0, py::arg("no_repeat_ngram_size") = 0,
      py::arg("greedy") = true, py::arg("samples") = 0, py::arg("temperature") = 0.7, py::arg("top_p") = 0.95,
      py::arg("top_k") = 0, py::arg("pass_at_k") = std::vector<int64_t>{}, py::arg("calculator") = false,
      py::arg("seed") = 0, py::arg("progress") = false, py::arg("predictions_path") = "",
      py::arg("tools") = nullptr);
}

}  // namespace ranktune::python
