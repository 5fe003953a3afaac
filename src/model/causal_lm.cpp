#include "ranktune/model/causal_lm.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/gpt2.h"
#include "ranktune/model/llama.h"
#include "ranktune/model/moe_causal_lm.h"
#include "checkpointing.h"
#include "size_limits.h"
#include "ranktune/model/loss.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/modules_to_save.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <set>

namespace ranktune::model {

CausalLMImpl::CausalLMImpl(std::string name, ModelConfig config, torch::Dtype dtype)
    : torch::nn::Module(std::move(name)), config_(std::move(config)), dtype_(dtype) {}

torch::Tensor CausalLMImpl::run_layer(const std::function<torch::Tensor(const torch::Tensor&)>& layer,
                                      const torch::Tensor& x, const KVCache* cache) const {
  if (gradient_checkpointing_ && is_training() && cache == nullptr && at::GradMode::is_enabled()) {
    return checkpointed(layer, x);
  }
  return layer(x);
}

CausalLMOutput CausalLMImpl::output_head(const torch::Tensor& hidden, peft::LinearImpl& head, const torch::Tensor& labels,
                                         bool need_logits) const {
  CausalLMOutput out;
  // Neither logits nor a loss wanted: the final hidden states (GRPO applies the head to the
  // completion in chunks), or a prefill that only fills the cache (generate's prompt).
  if (!labels.defined() && !need_logits) {
    out.hidden_states = hidden;
    return out;
  }
  // The chunked loss needs a plain projection: no bias and no adapter update on the head.
  if (labels.defined() && !need_logits && !head.bias.defined() && !head.has_active_update()) {
    out.loss = chunked_causal_lm_loss(hidden, head.weight_out_in(), labels);
    return out;
  }
  out.logits = head.forward(hidden);
  if (labels.defined()) out.loss = causal_lm_loss(out.logits, labels);
  return out;
}

peft::Linear make_output_head(const ModelConfig& config, const torch::Tensor& input_embeddings, torch::Dtype dtype) {
  const auto options = peft::LinearOptions(config.hidden_size, config.vocab_size).bias(false).dtype(dtype);
  // An untied head stays in full precision under model.quantize: the chunked loss reads its
  // weight for every 256 tokens, and the logits are what the loss and sampling see directly.
  peft::QuantizeNewLinears full_precision(QuantFormat::none);
  return config.tie_word_embeddings ? peft::Linear(options, input_embeddings) : peft::Linear(options);
}

KVCache CausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  return KVCache(config_.num_hidden_layers, batch, config_.num_key_value_heads, capacity, config_.head_dim,
                 at::TensorOptions().dtype(dtype_));
}

namespace {

// transformers' _init_weights: N(0, initializer_range) for linear and embedding weights, zero
// biases (DeepSeek-V3's router correction bias too); norms keep their ones. A quantized layer's weight is drawn in full precision where its
// parameter would have been (one layer at a time) and quantized: the same seed gives the same
// weights as an unquantized model, up to the quantisation.
void initialize_like_transformers(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (const auto& module : model.named_modules()) {
    if (auto* linear = dynamic_cast<peft::LinearImpl*>(module.value().get()); linear && linear->quantized()) {
      const auto& q = linear->quantized_weight();
      const auto shape = linear->options.fan_in_fan_out() ? std::vector<int64_t>{q.cols(), q.rows()}
                                                          : std::vector<int64_t>{q.rows(), q.cols()};
      linear->set_quantized_weight(at::empty(shape, at::TensorOptions().dtype(linear->options.dtype())).normal_(0.0, 0.02));
    }
    for (auto& item : module.value()->named_parameters(/*recurse=*/false)) {
      const std::string name = module.key().empty() ? item.key() : module.key() + "." + item.key();
      torch::Tensor& p = item.value();
      if (name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos) continue;
      if (ends_with(name, ".bias") || ends_with(name, ".e_score_correction_bias")) p.zero_();
      else p.normal_(0.0, 0.02);
    }
  }
}

// Base parameters of the model (adapter weights and modules_to_save copies excluded).
std::vector<std::pair<std::string, torch::Tensor>> base_parameters(torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& item : model.named_parameters()) {
    if (item.key().find("lora_") == std::string::npos && !peft::is_inside_saved_copies(item.key())) {
      out.emplace_back(item.key(), item.value());
    }
  }
  return out;
}

// Base linears whose weight is stored quantized, by qualified name (modules_to_save copies excluded).
std::vector<peft::NamedLinear> quantized_linears(const torch::nn::Module& model) {
  std::vector<peft::NamedLinear> out;
  for (auto& named : peft::find_linears(model)) {
    if (named.second->quantized() && !peft::is_inside_saved_copies(named.first)) out.push_back(named);
  }
  return out;
}

// The model with its projections quantized as they are built: placeholders that loading fills, or
// (`initialise`) layers initialised in full precision one at a time and quantized.
std::shared_ptr<CausalLMImpl> instantiate(const ModelConfig& config, const LoadOptions& options, bool initialise) {
  RANKTUNE_CHECK(!options.double_quant() || options.quantize() == QuantFormat::nf4,
                 "double quantisation applies to nf4 only (quantize is ", quant_format_name(options.quantize()), ")");
  peft::QuantizeNewLinears quantize(options.quantize(), options.double_quant(), initialise);
  if (config.is_gpt2()) return std::make_shared<GPT2LMHeadModelImpl>(config, options.dtype());
  if (config.is_moe() || config.is_mla() || config.model_type == "qwen2_moe") {
    return std::make_shared<MoeForCausalLMImpl>(config, options.dtype());
  }
  return std::make_shared<LlamaForCausalLMImpl>(config, options.dtype());
}

}  // namespace

std::shared_ptr<CausalLMImpl> create_causal_lm(const ModelConfig& config, const LoadOptions& options) {
  check_parameters_fit_memory(config, options.dtype(), options.quantize(), options.double_quant());
  std::shared_ptr<CausalLMImpl> model = instantiate(config, options, /*initialise=*/true);
  initialize_like_transformers(*model);
  return model;
}

std::shared_ptr<CausalLMImpl> create_causal_lm(const ModelConfig& config, torch::Dtype dtype) {
  return create_causal_lm(config, LoadOptions().dtype(dtype));
}

std::string LoadReport::describe() const {
  std::string out;
  auto section = [&](const char* title, const std::vector<std::string>& items) {
    if (items.empty()) return;
    const size_t shown = std::min<size_t>(items.size(), 20);
    out += c10::str("\n  ", title, " (", items.size(), "): ",
                    join(std::vector<std::string>(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(shown))),
                    items.size() > shown ? ", ..." : "");
  };
  section("missing from the checkpoint", missing_keys);
  section("in the checkpoint but not in the model", unexpected_keys);
  section("wrong shape", shape_mismatches);
  return out;
}

LoadReport load_weights(CausalLMImpl& model, const std::string& checkpoint_path, bool strict) {
  const io::SafetensorsCheckpoint checkpoint = io::SafetensorsCheckpoint::open(checkpoint_path);
  LoadReport report;
  std::set<std::string> used;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> assignments;  // parameter, checkpoint tensor
  std::vector<std::pair<std::shared_ptr<peft::LinearImpl>, std::string>> quantized;  // layer, tensor name
  for (auto& [name, linear] : quantized_linears(model)) {
    const std::string key = name + ".weight";
    if (!checkpoint.contains(key)) {
      report.missing_keys.push_back(key);
      continue;
    }
    used.insert(key);
    const auto& q = linear->quantized_weight();
    const std::vector<int64_t> shape = linear->options.fan_in_fan_out() ? std::vector<int64_t>{q.cols(), q.rows()}
                                                                        : std::vector<int64_t>{q.rows(), q.cols()};
    if (checkpoint.info(key).shape != shape) {
      report.shape_mismatches.push_back(c10::str(key, ": checkpoint ", torch::IntArrayRef(checkpoint.info(key).shape),
                                                 " vs model ", torch::IntArrayRef(shape)));
      continue;
    }
    quantized.emplace_back(linear, key);
  }
  for (auto& [name, param] : base_parameters(model)) {
    if (!checkpoint.contains(name)) {
      report.missing_keys.push_back(name);
      continue;
    }
    used.insert(name);
    const io::TensorInfo& info = checkpoint.info(name);
    if (torch::IntArrayRef(info.shape) != param.sizes()) {
      report.shape_mismatches.push_back(c10::str(name, ": checkpoint ", torch::IntArrayRef(info.shape), " vs model ",
                                                 param.sizes()));
      continue;
    }
    assignments.emplace_back(param, checkpoint.tensor(name));
  }
  for (const auto& name : checkpoint.names()) {
    if (used.count(name) == 0 && !model.ignorable_checkpoint_key(name)) report.unexpected_keys.push_back(name);
  }
  if (strict && !report.ok()) {
    throw Error(c10::str("the checkpoint does not fit ", model.config().architecture, " (hint: is config.json from the same model?):",
                         report.describe()),
                ErrorContext{checkpoint.files().size() == 1 ? checkpoint.files()[0] : checkpoint.path(), "", -1});
  }
  // Nothing is changed until everything has been checked. A parameter with a storage of its own
  // takes the checkpoint tensor (same dtype: used in place, memory-mapped and copy-on-write);
  // one that is a view into a shared buffer (fused projections) is copied into.
  at::NoGradGuard no_grad;
  // Quantized layers read their tensor one at a time (at most one layer's full-precision copy
  // exists), and the other parameters then take copies rather than views of the mapped file, so
  // that the mapping, and the file pages quantisation touched, are released when loading ends.
  for (auto& [linear, key] : quantized) linear->set_quantized_weight(checkpoint.tensor(key));
  const bool keep_mapping = quantized.empty();
  for (auto& [param, tensor] : assignments) {
    const bool owns_storage = param.storage().nbytes() == param.nbytes() && param.storage_offset() == 0;
    if (owns_storage) param.set_data(keep_mapping ? tensor.to(param.scalar_type()) : tensor.to(param.scalar_type(), false, /*copy=*/true));
    else param.copy_(tensor);
  }
  return report;
}

RoundingError save_model_weights(CausalLMImpl& model, const std::string& path, std::optional<torch::Dtype> dtype) {
  at::NoGradGuard no_grad;
  io::NamedTensors tensors;
  RoundingError error;
  double sq_change = 0.0, sq_weight = 0.0;
  // `full` in the compute dtype (or dequantized), written in `dtype`.
  auto add = [&](const std::string& name, const torch::Tensor& full) {
    if (!dtype || *dtype == full.scalar_type()) {
      tensors.emplace_back(name, full);
      return;
    }
    torch::Tensor stored = full.to(*dtype);
    const torch::Tensor change = stored.to(at::kDouble).sub_(full.to(at::kDouble));
    error.max_abs = std::max(error.max_abs, change.abs().max().item<double>());
    sq_change += change.square().sum().item<double>();
    sq_weight += full.to(at::kDouble).square().sum().item<double>();
    tensors.emplace_back(name, std::move(stored));
  };
  for (auto& [name, p] : base_parameters(model)) add(name, p.detach());
  for (auto& [name, linear] : quantized_linears(model)) {
    const torch::Tensor w = linear->dense_weight(linear->options.dtype());
    add(name + ".weight", linear->options.fan_in_fan_out() ? w.t().contiguous() : w);
  }
  if (sq_weight > 0) error.relative_rms = std::sqrt(sq_change / sq_weight);
  io::save_safetensors(path, tensors);
  return error;
}

std::shared_ptr<CausalLMImpl> load_causal_lm(const std::string& name_or_path, const LoadOptions& options) {
  const std::string dir = io::resolve_pretrained(name_or_path);
  RANKTUNE_CHECK_CTX(std::filesystem::is_directory(dir), (ErrorContext{dir, "", -1}),
                     "not a model directory (expected config.json and model.safetensors)");
  const std::string config_file = (std::filesystem::path(dir) / "config.json").string();
  const ModelConfig config = ModelConfig::load(dir);
  // Sizes are checked against the weights' headers and the memory before anything is allocated.
  check_sizes_against_checkpoint(config, config_file, io::SafetensorsCheckpoint::open(dir));
  check_parameters_fit_memory(config, options.dtype(), options.quantize(), options.double_quant(), config_file);
  std::shared_ptr<CausalLMImpl> model = instantiate(config, options, /*initialise=*/false);
  load_weights(*model, dir, /*strict=*/true);
  model->set_name_or_path(name_or_path);  // as given (a hub name stays a hub name in adapter configs)
  return model;
}

}  // namespace ranktune::model
