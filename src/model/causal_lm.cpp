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
  return config.tie_word_embeddings ? peft::Linear(options, input_embeddings) : peft::Linear(options);
}

KVCache CausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  return KVCache(config_.num_hidden_layers, batch, config_.num_key_value_heads, capacity, config_.head_dim,
                 at::TensorOptions().dtype(dtype_));
}

namespace {

// transformers' _init_weights: N(0, initializer_range) for linear and embedding weights, zero
// biases (DeepSeek-V3's router correction bias too); norms keep their ones.
void initialize_like_transformers(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    if (name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos) continue;
    if (ends_with(name, ".bias") || ends_with(name, ".e_score_correction_bias")) p.zero_();
    else p.normal_(0.0, 0.02);
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

std::shared_ptr<CausalLMImpl> instantiate(const ModelConfig& config, torch::Dtype dtype) {
  if (config.is_gpt2()) return std::make_shared<GPT2LMHeadModelImpl>(config, dtype);
  if (config.is_moe() || config.is_mla() || config.model_type == "qwen2_moe") {
    return std::make_shared<MoeForCausalLMImpl>(config, dtype);
  }
  return std::make_shared<LlamaForCausalLMImpl>(config, dtype);
}

}  // namespace

std::shared_ptr<CausalLMImpl> create_causal_lm(const ModelConfig& config, torch::Dtype dtype) {
  check_parameters_fit_memory(config, dtype);
  std::shared_ptr<CausalLMImpl> model = instantiate(config, dtype);
  initialize_like_transformers(*model);
  return model;
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
  for (auto& [param, tensor] : assignments) {
    const bool owns_storage = param.storage().nbytes() == param.nbytes() && param.storage_offset() == 0;
    if (owns_storage) param.set_data(tensor.to(param.scalar_type()));
    else param.copy_(tensor);
  }
  return report;
}

void save_model_weights(CausalLMImpl& model, const std::string& path, std::optional<torch::Dtype> dtype) {
  io::NamedTensors tensors;
  for (auto& [name, p] : base_parameters(model)) tensors.emplace_back(name, dtype ? p.detach().to(*dtype) : p.detach());
  io::save_safetensors(path, tensors);
}

std::shared_ptr<CausalLMImpl> load_causal_lm(const std::string& name_or_path, const LoadOptions& options) {
  const std::string dir = io::resolve_pretrained(name_or_path);
  RANKTUNE_CHECK_CTX(std::filesystem::is_directory(dir), (ErrorContext{dir, "", -1}),
                     "not a model directory (expected config.json and model.safetensors)");
  const std::string config_file = (std::filesystem::path(dir) / "config.json").string();
  const ModelConfig config = ModelConfig::load(dir);
  // Sizes are checked against the weights' headers and the memory before anything is allocated.
  check_sizes_against_checkpoint(config, config_file, io::SafetensorsCheckpoint::open(dir));
  check_parameters_fit_memory(config, options.dtype(), config_file);
  std::shared_ptr<CausalLMImpl> model = instantiate(config, options.dtype());
  load_weights(*model, dir, /*strict=*/true);
  model->set_name_or_path(name_or_path);  // as given (a hub name stays a hub name in adapter configs)
  return model;
}

}  // namespace ranktune::model
