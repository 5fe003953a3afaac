#pragma once
// ranktune::peft::Linear — the one adaptable linear layer. A frozen base weight (and bias) plus
// any number of named LoRA/DoRA adapters, following Hugging Face PEFT's lora.Linear:
//
//   LoRA:  y = W x + b + s · B A drop(x)
//   DoRA:  y = m ⊙ (W x + s · B A x) / sg(‖W + s·B A‖_row) + b        (no dropout)
//
// with s = lora_alpha / r (or lora_alpha / sqrt(r) for rsLoRA), sg = stop-gradient (DoRA §4.3).
// Several active adapters add their updates. Parameter names follow PEFT (`lora_A.<adapter>.weight`,
// `lora_B.<adapter>.weight`, `lora_magnitude_vector.<adapter>.weight`), while the base keeps the
// Hugging Face checkpoint names (`weight`, `bias`).
//
//   ranktune::peft::Linear proj(ranktune::peft::LinearOptions(4096, 4096).bias(false));
//   proj->add_adapter("default", ranktune::peft::AdapterOptions().r(16).lora_alpha(32).use_dora(true));

#include "ranktune/core/quantized_weight.h"
#include "ranktune/peft/lora_config.h"

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace ranktune::peft {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  // The weight is stored [in_features, out_features] (GPT-2's Conv1D) instead of [out, in].
  TORCH_ARG(bool, fan_in_fan_out) = false;
  // dtype of the base weight and bias.
  TORCH_ARG(torch::Dtype, dtype) = torch::kFloat32;
};

// The settings of one adapter on one layer: LoraConfig's per-layer fields, with its defaults and
// meaning (lora_config_fields.h), r and lora_alpha resolved for the layer's name, plus a dtype.
struct AdapterOptions {
  AdapterOptions() : AdapterOptions(LoraConfig()) {}
  // `config`'s per-layer fields, r and lora_alpha as given (before rank_pattern and alpha_pattern).
  explicit AdapterOptions(const LoraConfig& config);

  TORCH_ARG(int64_t, r);
  TORCH_ARG(double, lora_alpha);
  TORCH_ARG(double, lora_dropout);
  TORCH_ARG(bool, use_rslora);
  TORCH_ARG(bool, use_dora);
  TORCH_ARG(LoraInit, init_lora_weights);
  // dtype of lora_A, lora_B and the magnitude. Undefined: the base weight's dtype.
  TORCH_ARG(c10::optional<torch::Dtype>, dtype) = c10::nullopt;

 public:
  // s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
  double scaling() const;
  // Throws ranktune::Error naming the field (r, lora_alpha, lora_dropout) when invalid.
  void validate() const;
};

class AdapterVariant;

// One adapter's state on one layer. The tensors are the registered parameters.
struct Adapter {
  std::string name;
  AdapterOptions options;
  double scaling = 1.0;
  const AdapterVariant* variant = nullptr;
  torch::Tensor lora_A;     // [r, in]
  torch::Tensor lora_B;     // [out, r]
  torch::Tensor magnitude;  // [out], DoRA only
  torch::Tensor merged_weight_norm;  // DoRA: ‖W + s·B A‖ at merge time, for an exact unmerge
  bool active = true;
};

class LinearImpl : public torch::nn::Cloneable<LinearImpl> {
 public:
  LinearImpl(int64_t in_features, int64_t out_features)
      : LinearImpl(LinearOptions(in_features, out_features)) {}
  explicit LinearImpl(const LinearOptions& options);
  // Wraps existing base tensors, shared, not copied (e.g. a torch.nn.Linear's parameters, from
  // Python): `weight` [out, in], or [in, out] with fan_in_fan_out (GPT-2's Conv1D), and `bias`
  // [out] or undefined, of the weight's dtype and device. Their requires_grad stays as it is.
  LinearImpl(const torch::Tensor& weight, const torch::Tensor& bias, bool fan_in_fan_out = false);
  // A layer whose weight is another module's parameter ([out, in]), e.g. an output head tied to
  // the input embeddings: used, not registered, so the model lists the shared tensor once.
  LinearImpl(const LinearOptions& options, torch::Tensor tied_weight);

  // Registers the base weight (unless tied) and bias, frozen, and initialises them as
  // torch.nn.Linear does (a tied weight is left as it is). Adapters are removed.
  void reset() override;
  void reset_parameters();
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;
  void pretty_print(std::ostream& stream) const override;

  // The layer's output: base plus every active adapter's update (only the base when adapters are
  // disabled, none is active, or they are merged into the weight).
  torch::Tensor forward(const torch::Tensor& x);
  // residual + forward(x), the residual added inside the GEMM. For a pre-norm transformer's
  // output projections (o_proj, down_proj): the surrounding norms keep both the residual and the
  // sum, so a DoRA adapter recovers what its backward needs from them instead of keeping a copy.
  torch::Tensor forward_add(const torch::Tensor& x, const torch::Tensor& residual);
  // forward(x) with the base product W x (no bias) given by the caller — e.g. one GEMM for
  // several projections that read the same x — and, when defined, h = x Aᵀ of the one active
  // adapter (from stacked_adapter_inputs).
  torch::Tensor forward_with_base(const torch::Tensor& x, const torch::Tensor& base_product,
                                  const torch::Tensor& adapter_input_product = {});
  // W x + b (+ residual), ignoring adapters.
  torch::Tensor base_forward(const torch::Tensor& x, const torch::Tensor& residual = {}) const;
  // W x without the bias, in x's dtype when the weight is quantized (dequantized into it).
  torch::Tensor base_product(const torch::Tensor& x) const;
  // forward(x) adds an adapter update: adapters enabled, one active, none merged.
  bool has_active_update() const;

  // ---- adapters --------------------------------------------------------------------------------
  // Adds and initialises an adapter (active). Throws if the name exists or is not a valid
  // parameter name, or if the options are invalid. PiSSA and OLoRA rewrite the base weight.
  void add_adapter(const std::string& name, const AdapterOptions& options);
  // Adds an adapter with the given weights (copied), e.g. one read from a file. Shapes are
  // checked against this layer; `magnitude` is required exactly when options.use_dora().
  void add_adapter_from_weights(const std::string& name, const AdapterOptions& options,
                                const torch::Tensor& lora_A, const torch::Tensor& lora_B,
                                const torch::Tensor& magnitude = {});
  // Makes these tensors the adapter's weights in place of its own, shared, not copied (e.g. the
  // nn.Parameters a Python optimizer holds). Each must have the shape, dtype and device of the
  // tensor it replaces (`magnitude` exactly when the adapter is DoRA); their values are kept.
  void share_adapter_weights(const std::string& name, const torch::Tensor& lora_A, const torch::Tensor& lora_B,
                             const torch::Tensor& magnitude = {});
  // Removes an adapter (unmerging it first if merged). Throws if it does not exist.
  void delete_adapter(const std::string& name);
  bool has_adapter(const std::string& name) const;
  std::vector<std::string> adapter_names() const;
  const Adapter& adapter(const std::string& name) const;
  Adapter& adapter(const std::string& name);

  // Makes exactly these adapters active (the rest stay attached but unused). Names this layer
  // does not have are skipped, so one call can address a whole model.
  void set_active_adapters(const std::vector<std::string>& names);
  std::vector<std::string> active_adapters() const;
  // Disabling makes forward return the base output; a merged layer is unmerged first.
  void set_adapters_enabled(bool enabled);
  bool adapters_enabled() const { return adapters_enabled_; }

  // ---- merging ---------------------------------------------------------------------------------
  // Folds adapters (default: the active ones) into the base weight. With `safe`, the result is
  // computed on a copy and checked for NaN/Inf first; on failure the weight is untouched and the
  // error names the adapter.
  void merge(bool safe = false, const std::vector<std::string>& adapter_names = {});
  // Reverses merge() exactly (DoRA uses the norm cached at merge time), newest first: every
  // merged adapter, or only the newest `count`. A failed merge() has undone its own merges.
  void unmerge();
  void unmerge_newest(size_t count);
  bool merged() const { return !merged_order_.empty(); }
  bool is_merged(const std::string& name) const;
  const std::vector<std::string>& merged_adapters() const { return merged_order_; }
  // Removes every adapter, keeping the base weight as it is (merged adapters stay folded in).
  void unload();
  // s · B A in the base weight's layout ([out, in], or [in, out] with fan_in_fan_out).
  torch::Tensor delta_weight(const std::string& name) const;

  // ---- DoRA ------------------------------------------------------------------------------------
  // ‖W + s·B A‖ per output row from the low-rank factors (no out×in temporary), without grad.
  torch::Tensor dora_weight_norm(const Adapter& adapter) const;
  // Σ_j W_ij² per output row, cached until the base weight changes.
  const torch::Tensor& weight_row_sq_norm() const;

  // The base weight as [out, in] (a view when stored transposed).
  torch::Tensor weight_out_in() const { return options.fan_in_fan_out() ? weight.t() : weight; }

  // ---- quantized base ----------------------------------------------------------------------------
  // Stores the frozen base weight quantized (int8 per output row, or NF4 in blocks of 64, see
  // core/quantized_weight.h): the `weight` parameter is unregistered and left undefined, and
  // every product with W dequantizes rows on the fly. Throws for a tied weight, a merged adapter,
  // a weight that trains, or format none.
  void quantize_(QuantFormat format, bool double_quant = false);
  // Quantizes `weight` (the layer's layout, any floating dtype; not kept) as this quantized
  // layer's base weight, in its format: how a loader fills a quantized layer tensor by tensor.
  void set_quantized_weight(const torch::Tensor& weight);
  // Makes the weight a full `options.dtype` parameter again (the quantisation error stays).
  void dequantize_();
  bool quantized() const { return quantized_.defined(); }
  const QuantizedWeight& quantized_weight() const { return quantized_; }
  // The base weight [out, in] in `dtype`: dequantized when quantized, else weight_out_in() cast.
  torch::Tensor dense_weight(torch::Dtype dtype) const;
  // Bytes the base weight occupies (quantized codes and scales, or the dense tensor; 0 when tied).
  int64_t base_weight_nbytes() const;

  // ---- tied weight -----------------------------------------------------------------------------
  // The weight is another module's parameter (see the constructor).
  bool weight_is_tied() const { return tied_weight_.defined(); }
  const torch::Tensor& tied_weight() const { return tied_weight_; }
  // Makes `own` ([out, in]) this layer's registered weight; the tie ends.
  void untie(const torch::Tensor& own);

  LinearOptions options;
  torch::Tensor weight;  // [out, in] (or [in, out] with fan_in_fan_out); frozen
  torch::Tensor bias;    // [out] or undefined; frozen

 private:
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor& base_product, const torch::Tensor& residual,
                    const torch::Tensor& adapter_input_product = {});
  Adapter& register_adapter(const std::string& name, const AdapterOptions& options);
  torch::nn::Module& adapter_slot(const std::string& kind);
  // Registers `t` as `<slot>.<name>.weight`, replacing what was there.
  torch::Tensor set_adapter_weight(const std::string& slot, const std::string& name, torch::Tensor t,
                                   bool requires_grad);

  std::vector<Adapter> adapters_;           // insertion order; forward walks it
  std::vector<std::string> merged_order_;   // merge order, for unmerge: the one record of what is merged
  torch::Tensor tied_weight_;               // defined when the weight belongs to another module
  bool adapters_enabled_ = true;
  QuantizedWeight quantized_;               // defined when the base weight is stored quantized
  // Cache of weight_row_sq_norm(): valid while the weight's storage and version are unchanged.
  mutable torch::Tensor row_sq_norm_;
  mutable const void* row_sq_norm_data_ = nullptr;
  mutable uint32_t row_sq_norm_version_ = 0;
};

TORCH_MODULE(Linear);

// While one is alive (on this thread), every Linear built with a weight of its own stores it
// quantized and never holds it in full precision beyond its own construction: how a model is built
// without ever holding its base weights in full precision. Without `initialise` the weight is a
// quantized all-zero placeholder for a loader to set (set_quantized_weight), at no cost; with it,
// the layer is initialised as usual (drawing the same random numbers as an unquantized layer, so
// a seeded model gets the same weights) and then quantized. A scope with format none switches
// quantisation off (an output head kept in full precision). Scopes nest.
class QuantizeNewLinears {
 public:
  QuantizeNewLinears(QuantFormat format, bool double_quant = false, bool initialise = false);
  ~QuantizeNewLinears();
  QuantizeNewLinears(const QuantizeNewLinears&) = delete;
  QuantizeNewLinears& operator=(const QuantizeNewLinears&) = delete;

 private:
  QuantFormat previous_format_;
  bool previous_double_quant_;
  bool previous_initialise_;
};

// For layers that read the same x (q/k/v, gate/up): h = x Aᵀ of each layer's active adapter from
// one GEMM over the stacked A's, for forward_with_base. Empty when the layers cannot share it:
// not exactly one active, unmerged adapter each, dropout while training, or an adapter dtype
// other than x's (each adapter then reads its own dropped-out or cast input).
std::vector<torch::Tensor> stacked_adapter_inputs(const std::vector<LinearImpl*>& layers, const torch::Tensor& x);

}  // namespace ranktune::peft
