#pragma once
// Adapter variants: stateless plug-ins that hold the math of each kind of adapter (PEFT's
// LoraVariant design). All state lives on the layer's Adapter record; a variant only computes.

#include "ranktune/peft/linear.h"

namespace ranktune::peft {

// The input of one forward call, with the base product W x (no bias) computed at most once and
// shared by the adapters that need it, and the residual the output is added to (forward_add).
struct LayerInput {
  const torch::Tensor& x;
  torch::Tensor base_product;
  torch::Tensor residual;  // undefined: plain forward
  // h = x Aᵀ of `product_adapter`, when the caller computed it (stacked with other projections).
  torch::Tensor adapter_input_product;
  const Adapter* product_adapter = nullptr;
};

class AdapterVariant {
 public:
  virtual ~AdapterVariant() = default;
  virtual const char* name() const = 0;
  // Called once lora_A and lora_B hold their initial values (DoRA sets the magnitude here).
  virtual void init(LinearImpl& layer, Adapter& adapter) const = 0;
  // The layer output with this adapter's update added. `result` is the output so far, or
  // undefined when no adapter has run yet (the base output is then this variant's to compute).
  virtual torch::Tensor forward(const LinearImpl& layer, const Adapter& adapter, LayerInput& input,
                                torch::Tensor result) const = 0;
  // Folds the adapter into `weight` (the layer's layout) in place / reverses it exactly.
  virtual void merge(const LinearImpl& layer, Adapter& adapter, torch::Tensor& weight) const = 0;
  virtual void unmerge(const LinearImpl& layer, Adapter& adapter, torch::Tensor& weight) const = 0;
};

// The variant for these options: DoRA when use_dora, plain LoRA otherwise.
const AdapterVariant& variant_for(const AdapterOptions& options);

// W x + b (+ residual), with the residual added inside the GEMM.
torch::Tensor base_output(const LinearImpl& layer, LayerInput& input);

// Adds s · B A to `weight` (layer layout) in place, with `sign` = +1 or -1; no temporary.
void add_delta_weight_(const LinearImpl& layer, const Adapter& adapter, torch::Tensor& weight, double sign);

}  // namespace ranktune::peft
