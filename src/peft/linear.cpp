#include "ranktune/peft/linear.h"

#include "adapter_init.h"
#include "variant.h"
#include "ranktune/core/error.h"
#include "ranktune/peft/functional.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>

namespace ranktune::peft {
namespace {

// The child modules PEFT uses for adapter weights, in registration order.
const char* const kSlotA = "lora_A";
const char* const kSlotB = "lora_B";
const char* const kSlotMagnitude = "lora_magnitude_vector";

void check_adapter_name(const std::string& name) {
  RANKTUNE_CHECK(!name.empty(), "adapter name must not be empty");
  RANKTUNE_CHECK(name.find('.') == std::string::npos && name.find('/') == std::string::npos,
                 "adapter name '", name, "' must not contain '.' or '/'");
}

// PEFT keeps bf16/fp16 bases with fp32 adapters (autocast_adapter_dtype=True); fp32/fp64 bases
// get adapters of their own dtype.
torch::Dtype default_adapter_dtype(torch::Dtype base) {
  return (base == torch::kBFloat16 || base == torch::kFloat16) ? torch::kFloat32 : base;
}

}  // namespace

// ---- AdapterOptions ------------------------------------------------------------------------------

double AdapterOptions::scaling() const {
  return use_rslora_ ? lora_alpha_ / std::sqrt(static_cast<double>(r_)) : lora_alpha_ / static_cast<double>(r_);
}

void AdapterOptions::validate() const {
  LoraConfig().r(r_).lora_alpha(lora_alpha_).lora_dropout(lora_dropout_).validate();
}

// ---- construction ----------------------------------------------------------------------------------

LinearImpl::LinearImpl(const LinearOptions& options_) : options(options_) {
  LinearImpl::reset();
}

void LinearImpl::reset() {
  RANKTUNE_CHECK(options.in_features() > 0 && options.out_features() > 0,
                 "Linear needs positive in_features and out_features, got ", options.in_features(), " and ",
                 options.out_features());
  for (const char* slot : {kSlotA, kSlotB, kSlotMagnitude}) {
    if (named_children().contains(slot)) unregister_module(slot);
  }
  adapters_.clear();
  merged_order_.clear();
  const auto tensor_options = torch::TensorOptions().dtype(options.dtype());
  const auto shape = options.fan_in_fan_out()
                         ? std::vector<int64_t>{options.in_features(), options.out_features()}
                         : std::vector<int64_t>{options.out_features(), options.in_features()};
  weight = register_parameter("weight", torch::empty(shape, tensor_options), /*requires_grad=*/false);
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty({options.out_features()}, tensor_options), false);
  } else {
    bias = register_parameter("bias", torch::Tensor(), false);
  }
  reset_parameters();
}

void LinearImpl::reset_parameters() {
  // torch.nn.Linear's initialisation: kaiming-uniform(a = sqrt(5)) weight, U(±1/sqrt(in)) bias.
  at::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

std::shared_ptr<torch::nn::Module> LinearImpl::clone(const c10::optional<torch::Device>& device) const {
  at::NoGradGuard no_grad;
  auto copy = std::make_shared<LinearImpl>(options);
  copy->weight.copy_(weight);
  copy->weight.set_requires_grad(weight.requires_grad());
  if (bias.defined()) {
    copy->bias.copy_(bias);
    copy->bias.set_requires_grad(bias.requires_grad());
  }
  for (const Adapter& a : adapters_) {
    copy->add_adapter_from_weights(a.name, a.options, a.lora_A, a.lora_B,
                                   a.magnitude);
    Adapter& c = copy->adapter(a.name);
    c.active = a.active;
    c.merged = a.merged;
    if (a.merged_weight_norm.defined()) c.merged_weight_norm = a.merged_weight_norm.clone();
    c.lora_A.set_requires_grad(a.lora_A.requires_grad());
    c.lora_B.set_requires_grad(a.lora_B.requires_grad());
    if (a.magnitude.defined()) c.magnitude.set_requires_grad(a.magnitude.requires_grad());
  }
  copy->merged_order_ = merged_order_;
  copy->adapters_enabled_ = adapters_enabled_;
  copy->train(is_training());
  if (device) copy->to(*device);
  return copy;
}

void LinearImpl::pretty_print(std::ostream& stream) const {
  stream << "ranktune::peft::Linear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features();
  if (!options.bias()) stream << ", bias=false";
  if (options.fan_in_fan_out()) stream << ", fan_in_fan_out=true";
  if (!adapters_.empty()) {
    stream << ", adapters=[";
    for (size_t i = 0; i < adapters_.size(); ++i) {
      const Adapter& a = adapters_[i];
      stream << (i ? ", " : "") << a.name << ": r=" << a.options.r() << " " << a.variant->name();
      if (!a.active) stream << " inactive";
      if (a.merged) stream << " merged";
    }
    stream << "]";
  }
  stream << ")";
}

// ---- forward -----------------------------------------------------------------------------------

torch::Tensor LinearImpl::base_forward(const torch::Tensor& x) const {
  return functional::linear(x, weight_out_in(), bias);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) { return run(x, torch::Tensor(), torch::Tensor()); }

torch::Tensor LinearImpl::forward_add(const torch::Tensor& x, const torch::Tensor& residual) {
  return run(x, torch::Tensor(), residual);
}

torch::Tensor LinearImpl::forward_with_base(const torch::Tensor& x, const torch::Tensor& base_product,
                                            const torch::Tensor& adapter_input_product) {
  return run(x, base_product, torch::Tensor(), adapter_input_product);
}

torch::Tensor LinearImpl::run(const torch::Tensor& x, const torch::Tensor& base_product, const torch::Tensor& residual,
                              const torch::Tensor& adapter_input_product) {
  LayerInput input{x, base_product, residual, {}, nullptr};
  if (!adapters_enabled_ || merged()) return base_output(*this, input);
  if (adapter_input_product.defined()) {
    const auto active = active_adapters();
    RANKTUNE_CHECK(active.size() == 1, "an adapter input product needs exactly one active adapter, found ",
                   active.size());
    input.adapter_input_product = adapter_input_product;
    input.product_adapter = &adapter(active.front());
  }
  torch::Tensor result;
  for (const Adapter& a : adapters_) {
    if (a.active) result = a.variant->forward(*this, a, input, std::move(result));
  }
  return result.defined() ? result : base_output(*this, input);
}

// ---- adapters ----------------------------------------------------------------------------------

torch::nn::Module& LinearImpl::adapter_slot(const std::string& kind) {
  auto children = named_children();
  if (const auto* found = children.find(kind)) return **found;
  return *register_module(kind, std::make_shared<torch::nn::Module>("ModuleDict"));
}

Adapter& LinearImpl::register_adapter(const std::string& name, const AdapterOptions& adapter_options) {
  check_adapter_name(name);
  RANKTUNE_CHECK(!has_adapter(name), "adapter '", name, "' already exists on this layer");
  adapter_options.validate();
  const auto dtype = adapter_options.dtype().value_or(default_adapter_dtype(options.dtype()));
  const auto tensor_options = torch::TensorOptions().dtype(dtype).device(weight.device());

  Adapter a;
  a.name = name;
  a.options = adapter_options;
  a.options.dtype(dtype);
  a.scaling = adapter_options.scaling();
  a.variant = &variant_for(adapter_options);
  const int64_t r = adapter_options.r();
  auto make_holder = [&](const std::string& slot, torch::Tensor t) {
    auto holder = std::make_shared<torch::nn::Module>("AdapterWeight");
    torch::Tensor registered = holder->register_parameter("weight", std::move(t), /*requires_grad=*/true);
    adapter_slot(slot).register_module(name, holder);
    return registered;
  };
  a.lora_A = make_holder(kSlotA, torch::zeros({r, options.in_features()}, tensor_options));
  a.lora_B = make_holder(kSlotB, torch::zeros({options.out_features(), r}, tensor_options));
  if (adapter_options.use_dora()) {
    a.magnitude = make_holder(kSlotMagnitude, torch::ones({options.out_features()}, tensor_options));
  }
  adapters_.push_back(std::move(a));
  return adapters_.back();
}

void LinearImpl::add_adapter(const std::string& name, const AdapterOptions& adapter_options) {
  Adapter& a = register_adapter(name, adapter_options);
  try {
    initialize_adapter_weights(*this, a);
    a.variant->init(*this, a);
  } catch (...) {
    delete_adapter(name);
    throw;
  }
}

void LinearImpl::add_adapter_from_weights(const std::string& name, const AdapterOptions& adapter_options,
                                          const torch::Tensor& lora_A, const torch::Tensor& lora_B,
                                          const torch::Tensor& magnitude) {
  const int64_t r = adapter_options.r();
  auto shape_text = [](const torch::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : std::string("none"); };
  RANKTUNE_CHECK(lora_A.defined() && lora_A.dim() == 2 && lora_A.size(0) == r && lora_A.size(1) == options.in_features(),
                 "adapter '", name, "': lora_A has shape ", shape_text(lora_A), ", expected [", r, ", ",
                 options.in_features(), "] (r, in_features)");
  RANKTUNE_CHECK(lora_B.defined() && lora_B.dim() == 2 && lora_B.size(0) == options.out_features() && lora_B.size(1) == r,
                 "adapter '", name, "': lora_B has shape ", shape_text(lora_B), ", expected [", options.out_features(),
                 ", ", r, "] (out_features, r)");
  if (adapter_options.use_dora()) {
    RANKTUNE_CHECK(magnitude.defined() && magnitude.dim() == 1 && magnitude.size(0) == options.out_features(),
                   "adapter '", name, "': DoRA magnitude has shape ", shape_text(magnitude), ", expected [",
                   options.out_features(), "]");
  } else {
    RANKTUNE_CHECK(!magnitude.defined(), "adapter '", name,
                   "': a magnitude vector was given but the adapter does not use DoRA");
  }
  Adapter& a = register_adapter(name, adapter_options);
  at::NoGradGuard no_grad;
  a.lora_A.copy_(lora_A);
  a.lora_B.copy_(lora_B);
  if (a.magnitude.defined()) a.magnitude.copy_(magnitude);
}

void LinearImpl::delete_adapter(const std::string& name) {
  auto it = std::find_if(adapters_.begin(), adapters_.end(), [&](const Adapter& a) { return a.name == name; });
  RANKTUNE_CHECK(it != adapters_.end(), "adapter '", name, "' does not exist on this layer");
  if (it->merged) unmerge();
  it = std::find_if(adapters_.begin(), adapters_.end(), [&](const Adapter& a) { return a.name == name; });
  for (const char* slot : {kSlotA, kSlotB, kSlotMagnitude}) {
    auto children = named_children();
    if (const auto* found = children.find(slot)) {
      if ((*found)->named_children().contains(name)) (*found)->unregister_module(name);
      if ((*found)->named_children().is_empty()) unregister_module(slot);
    }
  }
  adapters_.erase(it);
}

bool LinearImpl::has_adapter(const std::string& name) const {
  return std::any_of(adapters_.begin(), adapters_.end(), [&](const Adapter& a) { return a.name == name; });
}

std::vector<std::string> LinearImpl::adapter_names() const {
  std::vector<std::string> names;
  for (const Adapter& a : adapters_) names.push_back(a.name);
  return names;
}

const Adapter& LinearImpl::adapter(const std::string& name) const {
  for (const Adapter& a : adapters_) {
    if (a.name == name) return a;
  }
  throw Error(c10::str("adapter '", name, "' does not exist on this layer"));
}

Adapter& LinearImpl::adapter(const std::string& name) {
  return const_cast<Adapter&>(static_cast<const LinearImpl&>(*this).adapter(name));
}

void LinearImpl::set_active_adapters(const std::vector<std::string>& names) {
  for (Adapter& a : adapters_) {
    a.active = std::find(names.begin(), names.end(), a.name) != names.end();
  }
}

std::vector<std::string> LinearImpl::active_adapters() const {
  std::vector<std::string> names;
  for (const Adapter& a : adapters_) {
    if (a.active) names.push_back(a.name);
  }
  return names;
}

void LinearImpl::set_adapters_enabled(bool enabled) {
  if (!enabled && merged()) unmerge();
  adapters_enabled_ = enabled;
}

// ---- merging -----------------------------------------------------------------------------------

void LinearImpl::merge(bool safe, const std::vector<std::string>& names) {
  const std::vector<std::string> targets = names.empty() ? active_adapters() : names;
  at::NoGradGuard no_grad;
  for (const std::string& name : targets) {
    Adapter& a = adapter(name);
    if (a.merged) continue;
    if (safe) {
      torch::Tensor candidate = weight.clone();
      const torch::Tensor saved_norm = a.merged_weight_norm;
      a.variant->merge(*this, a, candidate);
      if (!at::isfinite(candidate).all().item<bool>()) {
        a.merged_weight_norm = saved_norm;
        throw Error(c10::str("merging adapter '", name,
                             "' gives NaN or Inf weights; the layer was left unchanged"));
      }
      weight.copy_(candidate);
    } else {
      a.variant->merge(*this, a, weight);
    }
    a.merged = true;
    merged_order_.push_back(name);
  }
}

void LinearImpl::unmerge() {
  at::NoGradGuard no_grad;
  while (!merged_order_.empty()) {
    Adapter& a = adapter(merged_order_.back());
    a.variant->unmerge(*this, a, weight);
    a.merged = false;
    merged_order_.pop_back();
  }
}

void LinearImpl::unload() {
  merged_order_.clear();
  for (Adapter& a : adapters_) a.merged = false;
  while (!adapters_.empty()) delete_adapter(adapters_.back().name);
}

torch::Tensor LinearImpl::delta_weight(const std::string& name) const {
  const Adapter& a = adapter(name);
  at::NoGradGuard no_grad;
  torch::Tensor delta = torch::zeros_like(weight);
  add_delta_weight_(*this, a, delta, +1.0);
  return delta;
}

// ---- DoRA --------------------------------------------------------------------------------------

const torch::Tensor& LinearImpl::weight_row_sq_norm() const {
  const void* data = weight.data_ptr();
  const uint32_t version = weight._version();
  if (!row_sq_norm_.defined() || data != row_sq_norm_data_ || version != row_sq_norm_version_) {
    at::NoGradGuard no_grad;
    // A reduction kernel: no out×in temporary (weight.pow(2) would make one).
    row_sq_norm_ = at::linalg_vector_norm(weight_out_in(), 2, {1}, false, c10::nullopt).square_();
    row_sq_norm_data_ = data;
    row_sq_norm_version_ = version;
  }
  return row_sq_norm_;
}

torch::Tensor LinearImpl::dora_weight_norm(const Adapter& a) const {
  return functional::dora_weight_norm(weight_out_in(), weight_row_sq_norm(), a.lora_A, a.lora_B, a.scaling);
}

std::vector<torch::Tensor> stacked_adapter_inputs(const std::vector<LinearImpl*>& layers, const torch::Tensor& x) {
  std::vector<torch::Tensor> As;
  for (const LinearImpl* layer : layers) {
    if (!layer->adapters_enabled() || layer->merged()) return {};
    const Adapter* active = nullptr;
    for (const std::string& name : layer->active_adapters()) {
      if (active != nullptr) return {};
      active = &layer->adapter(name);
    }
    if (active == nullptr || active->lora_A.scalar_type() != x.scalar_type()) return {};
    if (layer->is_training() && active->options.lora_dropout() > 0) return {};
    As.push_back(active->lora_A);
  }
  return functional::stacked_lora_a_products(x, As);
}

}  // namespace ranktune::peft
