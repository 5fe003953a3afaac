#include "fused_projections.h"

#include "ranktune/peft/functional.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace ranktune::model {

FusedProjections::FusedProjections(std::vector<peft::LinearImpl*> layers) : layers_(std::move(layers)) {
  // Quantized weights are dequantized per layer in row chunks: a fused buffer would hold them in
  // full precision, so each layer keeps its own (the adapters' x Aᵀ are still stacked).
  if (quantized()) return;
  std::vector<torch::Tensor> weights;
  for (auto* layer : layers_) {
    TORCH_INTERNAL_ASSERT(!layer->options.fan_in_fan_out());
    weights.push_back(layer->weight);
    sizes_.push_back(layer->weight.size(0));
  }
  at::NoGradGuard no_grad;
  weight_ = at::cat(weights, 0);
  int64_t offset = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->weight.set_data(weight_.narrow(0, offset, sizes_[i]));
    offset += sizes_[i];
  }
}

bool FusedProjections::quantized() const {
  return std::all_of(layers_.begin(), layers_.end(), [](const peft::LinearImpl* l) { return l->quantized(); });
}

std::optional<std::vector<torch::Tensor>> FusedProjections::base_products(const torch::Tensor& x) const {
  if (quantized()) {
    std::vector<torch::Tensor> products;
    for (const auto* layer : layers_) products.push_back(layer->base_product(x));
    return products;
  }
  if (!weight_.defined()) return std::nullopt;
  int64_t offset = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const torch::Tensor& w = layers_[i]->weight;
    const auto* expected = static_cast<const char*>(weight_.data_ptr()) + offset * w.stride(0) * w.element_size();
    if (w.requires_grad() || w.data_ptr() != expected || w.scalar_type() != weight_.scalar_type()) return std::nullopt;
    offset += sizes_[i];
  }
  if (x.scalar_type() != weight_.scalar_type()) return std::nullopt;
  return peft::functional::linear(x, weight_).split_with_sizes(sizes_, -1);
}

std::vector<torch::Tensor> FusedProjections::forward(const torch::Tensor& x) const {
  std::vector<torch::Tensor> outputs;
  const auto base = base_products(x);
  if (!base) {
    for (auto* layer : layers_) outputs.push_back(layer->forward(x));
    return outputs;
  }
  const std::vector<torch::Tensor> adapter_inputs = peft::stacked_adapter_inputs(layers_, x);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const torch::Tensor h = adapter_inputs.empty() ? torch::Tensor() : adapter_inputs[i];
    outputs.push_back(layers_[i]->forward_with_base(x, (*base)[i], h));
  }
  return outputs;
}

}  // namespace ranktune::model
