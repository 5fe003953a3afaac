// Models (ranktune::model): loading, forward, generation, parameters; and safetensors files
// (ranktune::io), which the Python side uses to read golden logits and write adapters.

#include "common.h"

#include "ranktune/core/error.h"
#include "ranktune/core/threads.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/hub_download.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/model/generation.h"
#include "ranktune/peft/inject.h"
#include "ranktune/prompt/tools.h"
#include "ranktune/tokenizer/tokenizer.h"

#include <ATen/ATen.h>

#include <optional>
#include <sstream>

namespace ranktune::python {
namespace {

using model::CausalLMImpl;
using CausalLMPtr = std::shared_ptr<CausalLMImpl>;

// ---- config ------------------------------------------------------------------------------------------

const char* rope_type_name(model::RopeScaling::Type t) {
  switch (t) {
    case model::RopeScaling::Type::none: return "none";
    case model::RopeScaling::Type::linear: return "linear";
    case model::RopeScaling::Type::dynamic: return "dynamic";
    case model::RopeScaling::Type::llama3: return "llama3";
    case model::RopeScaling::Type::yarn: return "yarn";
  }
  return "none";
}

// The normalised config under Hugging Face's field names (the Python side adds config.json's own).
py::dict config_to_dict(const model::ModelConfig& c) {
  py::dict d;
  d["architectures"] = py::make_tuple(c.architecture);
  d["model_type"] = c.model_type;
  d["vocab_size"] = c.vocab_size;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["num_hidden_layers"] = c.num_hidden_layers;
  d["num_attention_heads"] = c.num_attention_heads;
  d["num_key_value_heads"] = c.num_key_value_heads;
  d["head_dim"] = c.head_dim;
  d["max_position_embeddings"] = c.max_position_embeddings;
  d[c.is_gpt2() ? "layer_norm_epsilon" : "rms_norm_eps"] = c.norm_eps;
  d["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == model::RopeScaling::Type::none) {
    d["rope_scaling"] = py::none();
  } else {
    py::dict rs;
    rs["rope_type"] = rope_type_name(c.rope_scaling.type);
    rs["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == model::RopeScaling::Type::llama3) {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    if (c.rope_scaling.type == model::RopeScaling::Type::yarn) {
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
      rs["beta_fast"] = c.rope_scaling.beta_fast;
      rs["beta_slow"] = c.rope_scaling.beta_slow;
      rs["mscale"] = c.rope_scaling.mscale;
      rs["mscale_all_dim"] = c.rope_scaling.mscale_all_dim;
    }
    d["rope_scaling"] = rs;
  }
  d["tie_word_embeddings"] = c.tie_word_embeddings;
  d["attention_bias"] = c.attention_bias;
  d["mlp_bias"] = c.mlp_bias;
  d["hidden_act"] = c.hidden_act;
  d["sliding_window"] = c.sliding_window ? py::cast(*c.sliding_window) : py::none();
  d["bos_token_id"] = c.bos_token_id ? py::cast(*c.bos_token_id) : py::none();
  if (c.eos_token_ids.empty()) d["eos_token_id"] = py::none();
  else if (c.eos_token_ids.size() == 1) d["eos_token_id"] = c.eos_token_ids[0];
  else d["eos_token_id"] = py::cast(c.eos_token_ids);
  d["pad_token_id"] = c.pad_token_id ? py::cast(*c.pad_token_id) : py::none();
  d["torch_dtype"] = c.torch_dtype;
  return d;
}

py::dict load_report_to_dict(const model::LoadReport& r) {
  py::dict d;
  d["missing_keys"] = r.missing_keys;
  d["unexpected_keys"] = r.unexpected_keys;
  d["shape_mismatches"] = r.shape_mismatches;
  return d;
}

// ---- generation --------------------------------------------------------------------------------------

py::list generate(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts, int64_t max_new_tokens,
                  double temperature, int64_t top_k, double top_p, uint64_t seed, double repetition_penalty,
                  int64_t no_repeat_ngram_size, const std::vector<int64_t>& eos_token_ids, int64_t pad_token_id,
                  const std::vector<std::string>& stop_strings, const tokenizer::Tokenizer* tok,
                  const prompt::ToolUse* tools, int64_t num_return_sequences) {
  model::GenerationOptions o;
  o.max_new_tokens(max_new_tokens)
      .num_return_sequences(num_return_sequences)
      .temperature(temperature)
      .top_k(top_k)
      .top_p(top_p)
      .seed(seed)
      .repetition_penalty(repetition_penalty)
      .no_repeat_ngram_size(no_repeat_ngram_size)
      .eos_token_ids(eos_token_ids)
      .pad_token_id(pad_token_id);
  if (!stop_strings.empty()) {
    RANKTUNE_CHECK(tok != nullptr, "stop_strings need a tokenizer to decode the generated tokens: pass tokenizer=...");
    const tokenizer::Tokenizer copy = *tok;  // a cheap handle; the lambda must not reach into Python
    o.stop(model::stop_at_strings(stop_strings, [copy](const std::vector<int64_t>& ids) { return copy.decode(ids); }));
  }
  if (tools != nullptr) {  // the tools answer calls; the stop strings then skip their responses
    RANKTUNE_CHECK(tok != nullptr, "tools need a tokenizer to read calls and encode results: pass tokenizer=...");
    const prompt::ToolHooks hooks = prompt::tool_generation_hooks(*tools, *tok, stop_strings);
    o.inject(hooks.inject).stop(hooks.stop);
  }
  const std::vector<model::Generation> out = run_interruptible([&] { return model::generate(model, prompts, o); });
  py::list result;
  for (const auto& g : out) result.append(py::make_tuple(g.tokens, g.finish_reason));
  return result;
}

}  // namespace

// dtype= quantize= double_quant= as the loader takes them; a bad value names the argument.
static model::LoadOptions load_options(const std::string& dtype, const std::string& quantize, bool double_quant) {
  QuantFormat format;
  try {
    format = parse_quant_format(quantize);
  } catch (const Error& e) {
    throw Error(c10::str("quantize=: ", e.message()));
  }
  RANKTUNE_CHECK(!double_quant || format == QuantFormat::nf4, "double_quant=True needs quantize='nf4'");
  return model::LoadOptions().dtype(parse_dtype(dtype)).quantize(format).double_quant(double_quant);
}

void bind_models(py::module_& m) {
  m.def("configure_threads", &configure_threads, py::arg("n") = 0,
        "Sets LibTorch's intra-op threads: n > 0 uses n; n <= 0 uses $RANKTUNE_NUM_THREADS, else every core. "
        "Returns the count in effect.");
  m.def("model_config", [](const std::string& path) { return config_to_dict(model::ModelConfig::load(path)); },
        py::arg("path"), "The normalised config.json of a model directory (Hugging Face field names).");

  m.def("resolve_pretrained", &io::resolve_pretrained, py::arg("name_or_path"),
        "A local path as it is; org/name[@revision] as its snapshot directory in the Hugging Face cache "
        "(HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub); an error listing the places tried when absent.");
  m.def(
      "download",
      [](const std::string& repo_id, const std::string& revision, const std::string& cache_dir,
         const std::string& endpoint, const std::string& token) {
        io::HubDownloadOptions o;
        o.revision = revision;
        o.cache_dir = cache_dir;
        o.endpoint = endpoint;
        o.token = token;
        py::gil_scoped_release release;
        return io::download_snapshot(repo_id, o);
      },
      py::arg("repo_id"), py::arg("revision") = "main", py::arg("cache_dir") = "", py::arg("endpoint") = "",
      py::arg("token") = "",
      "Downloads a model repository from the Hugging Face Hub into the cache (resumable, checksummed; "
      "HF_ENDPOINT and HF_TOKEN when endpoint/token are empty). Returns the snapshot directory.");
  m.def(
      "download_if_missing",
      [](const std::string& name_or_path) {
        py::gil_scoped_release release;
        return io::download_if_missing(name_or_path);
      },
      py::arg("name_or_path"), "model.download: a local path or cached name as it resolves, else downloaded.");

    py::class_<CausalLMImpl, CausalLMPtr>(m, "CausalLM", "A ranktune decoder-only model (Llama, Mistral, Qwen2, GPT-2, Mixtral, Qwen2-MoE, DeepSeek-V2/V3).")
      .def_static(
          "load",
          [](const std::string& path, const std::string& dtype, const std::string& quantize, bool double_quant) {
            const auto options = load_options(dtype, quantize, double_quant);
            py::gil_scoped_release release;
            return model::load_causal_lm(path, options);
          },
          py::arg("path"), py::arg("dtype") = "float32", py::arg("quantize") = "none", py::arg("double_quant") = false)
      .def_static(
          "create",
          [](const std::string& config_json, const std::string& source, const std::string& dtype, uint64_t seed,
             const std::string& quantize, bool double_quant) {
            const model::ModelConfig config = model::ModelConfig::from_json(config_json, source);
            const auto options = load_options(dtype, quantize, double_quant);
            py::gil_scoped_release release;
            at::manual_seed(seed);
            try {
              return model::create_causal_lm(config, options);
            } catch (const Error& e) {  // a model too large for memory: name the file it came from
              throw e.with_context(ErrorContext{source, "", -1});
            }
          },
          py::arg("config_json"), py::arg("source") = "", py::arg("dtype") = "float32", py::arg("seed") = 0,
          py::arg("quantize") = "none", py::arg("double_quant") = false,
          "A model with random weights (transformers' initialisation) from config.json text, seeded.")
      .def(
          "forward",
          [](CausalLMImpl& self, const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
             const std::optional<at::Tensor>& labels) {
            model::CausalLMOutput out;
            {
              py::gil_scoped_release release;
              out = self.forward(input_ids, attention_mask.value_or(at::Tensor()), labels.value_or(at::Tensor()));
            }
            return py::make_tuple(out.logits, out.loss.defined() ? py::cast(out.loss) : py::none(),
                                  out.aux_loss.defined() ? py::cast(out.aux_loss) : py::none());
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("labels") = py::none())
      .def("generate", &generate, py::arg("prompts"), py::arg("max_new_tokens"), py::arg("temperature"),
           py::arg("top_k"), py::arg("top_p"), py::arg("seed"), py::arg("repetition_penalty"),
           py::arg("no_repeat_ngram_size"), py::arg("eos_token_ids"), py::arg("pad_token_id"),
           py::arg("stop_strings"), py::arg("tokenizer") = nullptr, py::arg("tools") = nullptr,
           py::arg("num_return_sequences") = 1)
      .def("named_parameters",
           [](CausalLMImpl& self) {
             std::vector<std::pair<std::string, at::Tensor>> out;
             for (const auto& item : self.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
             return out;
           })
      .def(
          "parameter_counts",
          [](CausalLMImpl& self) {
            // The C++ count: tied weights once, quantized projection weights (no parameters) included.
            const auto counts = peft::count_parameters(self);
            return std::map<std::string, int64_t>{{"trainable", counts.trainable}, {"total", counts.total}};
          })
      .def("named_buffers",
           [](CausalLMImpl& self) {
             std::vector<std::pair<std::string, at::Tensor>> out;
             for (const auto& item : self.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
             return out;
           })
      .def("named_modules",
           [](CausalLMImpl& self) {
             std::vector<std::string> out;
             for (const auto& item : self.named_modules("", /*include_self=*/false)) out.push_back(item.key());
             return out;
           })
      .def("set_training", [](CausalLMImpl& self, bool mode) { self.train(mode); }, py::arg("mode"))
      .def_property_readonly("training", [](const CausalLMImpl& self) { return self.is_training(); })
      .def_property_readonly("config", [](const CausalLMImpl& self) { return config_to_dict(self.config()); })
      .def_property_readonly("dtype", [](const CausalLMImpl& self) { return dtype_name(self.dtype()); })
      .def_property_readonly("output_head_name", &CausalLMImpl::output_head_name)
      .def_property("name_or_path", &CausalLMImpl::name_or_path, &CausalLMImpl::set_name_or_path,
                    "Where the model came from; adapter configs record it as base_model_name_or_path.")
      .def_property_readonly("word_embeddings_tied", &CausalLMImpl::word_embeddings_tied,
                             "The output head still uses the input embeddings' weight.")
      .def_property("gradient_checkpointing", &CausalLMImpl::gradient_checkpointing,
                    &CausalLMImpl::set_gradient_checkpointing)
      .def(
          "save_weights",
          [](CausalLMImpl& self, const std::string& path, const std::optional<std::string>& dtype) {
            std::optional<torch::Dtype> t;
            if (dtype) t = parse_dtype(*dtype);
            py::gil_scoped_release release;
            model::save_model_weights(self, path, t);
          },
          py::arg("path"), py::arg("dtype") = py::none())
      .def(
          "load_weights",
          [](CausalLMImpl& self, const std::string& checkpoint, bool strict) {
            model::LoadReport r;
            {
              py::gil_scoped_release release;
              r = model::load_weights(self, checkpoint, strict);
            }
            return load_report_to_dict(r);
          },
          py::arg("checkpoint"), py::arg("strict") = true)
      .def("__repr__", [](const CausalLMImpl& self) {
        std::ostringstream os;
        os << self;
        return os.str();
      });

  // ---- safetensors -------------------------------------------------------------------------------------
  m.def(
      "save_safetensors",
      [](const std::string& path, const io::NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
        py::gil_scoped_release release;
        io::save_safetensors(path, tensors, metadata);
      },
      py::arg("path"), py::arg("tensors"), py::arg("metadata") = std::map<std::string, std::string>{{"format", "pt"}},
      "Writes [(name, tensor)] to `path` atomically in safetensors format.");
  m.def(
      "load_safetensors",
      [](const std::string& path) {
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        std::map<std::string, std::string> metadata;
        {
          py::gil_scoped_release release;
          const io::SafetensorsFile file = io::SafetensorsFile::open(path);
          for (const auto& name : file.names()) tensors.emplace_back(name, file.tensor(name));
          metadata = file.metadata();
        }
        return py::make_tuple(tensors, metadata);
      },
      py::arg("path"),
      "Reads a validated safetensors file: ([(name, tensor)], metadata). Tensors map the file copy-on-write.");
}

}  // namespace ranktune::python
