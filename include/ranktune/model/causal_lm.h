#pragma once
// CausalLM: the common face of the decoder-only models (Llama, Mistral, Qwen2, GPT-2). Parameter
// names are Hugging Face's, every projection is a peft::Linear, and the outputs (logits, loss)
// are what transformers computes for the same weights and inputs.
//
//   auto model = ranktune::model::load_causal_lm("path/to/model_dir");
//   auto out = model->forward(input_ids, {}, /*labels=*/input_ids);

#include "ranktune/core/quantized_weight.h"
#include "ranktune/model/config.h"
#include "ranktune/model/kv_cache.h"
#include "ranktune/peft/adaptable_model.h"

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::model {

struct CausalLMOutput {
  torch::Tensor logits;  // [batch, seq, vocab] in the model's dtype
  torch::Tensor loss;    // scalar fp32, defined when labels were given (with an MoE's aux loss, included)
  // Mixture-of-experts models with output_router_logits: transformers' load-balancing loss over
  // every sparse layer's router (loss already includes router_aux_loss_coef times it).
  torch::Tensor aux_loss;
  // The final (normed) hidden states [batch, seq, hidden], returned instead of logits when neither
  // labels nor logits are asked for: callers that need per-token quantities of only some tokens
  // (GRPO's log-probs) apply the head to them in chunks.
  torch::Tensor hidden_states;
};

// Every model has an output head module `lm_head` (a peft::Linear); with tie_word_embeddings its
// weight is the input embeddings' (one tensor, listed once), as in transformers.
class CausalLMImpl : public torch::nn::Module, public peft::AdaptableModel {
 public:
  CausalLMImpl(std::string name, ModelConfig config, torch::Dtype dtype);

  // input_ids [batch, seq] (int64). attention_mask [batch, cached + seq] with 1 for tokens and 0
  // for padding (optional). labels [batch, seq] with -100 for positions without loss (optional).
  // With a cache, the new keys/values are appended and positions continue after the cached ones.
  // need_logits = false (with labels): only the loss is computed, from the hidden states in chunks
  // (chunked_causal_lm_loss), so the [tokens, vocab] logits are never held; logits is undefined.
  // need_logits = false without labels: only hidden_states is set.
  virtual CausalLMOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                                 const torch::Tensor& labels = {}, KVCache* cache = nullptr, bool need_logits = true) = 0;

  const ModelConfig& config() const { return config_; }
  torch::Dtype dtype() const { return dtype_; }

  // ---- peft::AdaptableModel ----
  std::string output_head_name() const override { return "lm_head"; }
  std::vector<peft::NamedLinear> adaptable_layers() const override { return peft::find_linears(*this); }
  std::string name_or_path() const override { return name_or_path_; }
  std::string task_type() const override { return "CAUSAL_LM"; }

  // Where the model was loaded from (load_causal_lm sets it), recorded in adapter configs.
  void set_name_or_path(std::string name_or_path) { name_or_path_ = std::move(name_or_path); }
  // The output head; its weight is the input embeddings' while they are tied.
  virtual peft::LinearImpl& lm_head_layer() = 0;
  // The head still uses the input embeddings' weight (merging a modules_to_save copy into one end
  // of a tied pair unties it).
  bool word_embeddings_tied() { return lm_head_layer().weight_is_tied(); }
  // Names of checkpoint tensors that may be present but are not parameters (buffers that
  // transformers saves, or a duplicate of tied embeddings).
  virtual bool ignorable_checkpoint_key(const std::string& name) const = 0;

  // An empty cache sized for this model.
  virtual KVCache make_cache(int64_t batch, int64_t capacity) const;

  // Recompute each decoder layer's activations in backward instead of storing them (training
  // only; forward passes without gradients are unaffected).
  void set_gradient_checkpointing(bool enabled) { gradient_checkpointing_ = enabled; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

 protected:
  // Logits and loss from the final hidden states through `head`: the shared tail of every forward.
  CausalLMOutput output_head(const torch::Tensor& hidden, peft::LinearImpl& head, const torch::Tensor& labels,
                             bool need_logits) const;
  // Runs one decoder layer, checkpointed when enabled and gradients are being recorded.
  torch::Tensor run_layer(const std::function<torch::Tensor(const torch::Tensor&)>& layer, const torch::Tensor& x,
                          const KVCache* cache) const;

  ModelConfig config_;
  torch::Dtype dtype_;
  bool gradient_checkpointing_ = false;
  std::string name_or_path_;
};

// The output head `config` describes: hidden -> vocab without bias; its weight is
// `input_embeddings` (not registered again) when config.tie_word_embeddings.
peft::Linear make_output_head(const ModelConfig& config, const torch::Tensor& input_embeddings, torch::Dtype dtype);

struct LoadOptions {
  // Compute dtype: weights stored in any dtype are converted to it.
  TORCH_ARG(torch::Dtype, dtype) = torch::kFloat32;
  // Store every frozen projection weight (each peft::Linear's own base weight) quantized: int8 per
  // output row, or NF4 in blocks of 64 (docs/quantization.md). Embeddings, norms and the output
  // head stay in `dtype`. Each layer is quantized as it is built and again as its tensor is read
  // from the checkpoint, so the model's projections never all exist in full precision at once.
  TORCH_ARG(QuantFormat, quantize) = QuantFormat::none;
  // nf4 only: the block absmaxes quantized to int8 as well (QLoRA's double quantisation).
  TORCH_ARG(bool, double_quant) = false;
};

// Builds the model a config describes, with random weights (as transformers' initialisation:
// N(0, 0.02) for projections and embeddings, ones for norms), quantized as `options` say.
std::shared_ptr<CausalLMImpl> create_causal_lm(const ModelConfig& config, const LoadOptions& options);
std::shared_ptr<CausalLMImpl> create_causal_lm(const ModelConfig& config, torch::Dtype dtype = torch::kFloat32);

// What loading found besides the expected tensors. Strict loading throws, listing all of it.
struct LoadReport {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
  std::vector<std::string> shape_mismatches;  // "name: checkpoint [a, b] vs model [c, d]"
  bool ok() const { return missing_keys.empty() && unexpected_keys.empty() && shape_mismatches.empty(); }
  std::string describe() const;
};

// Reads config.json and the safetensors weights of a model directory. Weights stored in the
// compute dtype are used in place from the memory-mapped file (copy-on-write), others are
// converted. Throws ranktune::Error naming the directory and listing every missing, unexpected
// or mis-shaped tensor.
std::shared_ptr<CausalLMImpl> load_causal_lm(const std::string& dir, const LoadOptions& options = {});

// Writes every base parameter under its Hugging Face name (tied embeddings once), converted to
// `dtype` when given, as one safetensors file; quantized weights are written dequantized. Atomic.
// Returns what converting to `dtype` cost: the largest absolute change of any weight, and the
// root-mean-square change relative to the weights' root-mean-square (0 without a conversion).
struct RoundingError {
  double max_abs = 0.0;
  double relative_rms = 0.0;
};
RoundingError save_model_weights(CausalLMImpl& model, const std::string& path,
                                 std::optional<torch::Dtype> dtype = std::nullopt);

// Loads checkpoint tensors into an existing model's base parameters (adapter weights are not
// touched; quantized layers quantize theirs as read, one shard after another) and returns what
// did not fit. With `strict`, throws if anything did not fit.
LoadReport load_weights(CausalLMImpl& model, const std::string& checkpoint, bool strict = true);

}  // namespace ranktune::model
