#include "ranktune/peft/linear.h"

#include "adapter_init.h"
#include "variant.h"
#include "ranktune/core/autocast.h"
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

// The quantisation QuantizeNewLinears asks of Linears built on this thread.
thread_local QuantFormat new_linear_format = QuantFormat::none;
thread_local bool new_linear_double_quant = false;
thread_local bool new_linear_initialise = false;

// Rows of a quantized weight dequantized at once: the whole layer up to 2²⁴ weights (a 64 MiB
// fp32 temporary), row chunks of that size beyond. Whole layers measured fastest: chunks of ~1 MiB
// took 1.5-3× as long (`ranktune_bench dequant`, docs/quantization.md).
int64_t dequant_rows_per_chunk(const QuantizedWeight& w) {
  constexpr int64_t kElements = int64_t{1} << 24;
  return std::max<int64_t>(1, kElements / std::max<int64_t>(1, w.cols()));
}

// The shape of the layer's weight in its own layout.
std::vector<int64_t> quantized_weight_shape(const LinearOptions& options) {
  return options.fan_in_fan_out() ? std::vector<int64_t>{options.in_features(), options.out_features()}
                                  : std::vector<int64_t>{options.out_features(), options.in_features()};
}

// PEFT keeps bf16/fp16 bases with fp32 adapters (autocast_adapter_dtype=True); fp32/fp64 bases
// get adapters of their own dtype.
torch::Dtype default_adapter_dtype(torch::Dtype base) {
  return (base == torch::kBFloat16 || base == torch::kFloat16) ? torch::kFloat32 : base;
}

}  // namespace

// ---- AdapterOptions ------------------------------------------------------------------------------

AdapterOptions::AdapterOptions(const LoraConfig& config)
    : r_(config.r()),
      lora_alpha_(config.lora_alpha()),
      lora_dropout_(config.lora_dropout()),
      use_rslora_(config.use_rslora()),
      use_dora_(config.use_dora()),
      init_lora_weights_(config.init_lora_weights()) {}

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

namespace {

LinearOptions options_for_wrapped(const torch::Tensor& weight, const torch::Tensor& bias, bool fan_in_fan_out) {
  RANKTUNE_CHECK(weight.defined() && weight.dim() == 2 && weight.is_floating_point(),
                 "Linear needs a 2-D floating-point base weight, got ",
                 weight.defined() ? c10::str(weight.sizes(), " ", weight.scalar_type()) : std::string("none"));
  const int64_t out = fan_in_fan_out ? weight.size(1) : weight.size(0);
  const int64_t in = fan_in_fan_out ? weight.size(0) : weight.size(1);
  if (bias.defined()) {
    RANKTUNE_CHECK(bias.dim() == 1 && bias.size(0) == out, "Linear: bias has shape ", bias.sizes(),
                   " but the weight ", weight.sizes(), fan_in_fan_out ? " ([in, out])" : " ([out, in])",
                   " has ", out, " outputs");
    RANKTUNE_CHECK(bias.scalar_type() == weight.scalar_type() && bias.device() == weight.device(),
                   "Linear: bias is ", bias.scalar_type(), " on ", bias.device(), " but the weight is ",
                   weight.scalar_type(), " on ", weight.device());
  }
  return LinearOptions(in, out).bias(bias.defined()).fan_in_fan_out(fan_in_fan_out).dtype(weight.scalar_type());
}

}  // namespace

LinearImpl::LinearImpl(const torch::Tensor& weight_, const torch::Tensor& bias_, bool fan_in_fan_out)
    : options(options_for_wrapped(weight_, bias_, fan_in_fan_out)) {
  RANKTUNE_CHECK(options.in_features() > 0 && options.out_features() > 0, "Linear needs a non-empty base weight, got ",
                 weight_.sizes());
  weight = register_parameter("weight", weight_, weight_.requires_grad());
  bias = register_parameter("bias", bias_, bias_.defined() && bias_.requires_grad());
}

LinearImpl::LinearImpl(const LinearOptions& options_, torch::Tensor tied_weight)
    : options(options_), tied_weight_(std::move(tied_weight)) {
  RANKTUNE_CHECK(tied_weight_.defined() && !options.fan_in_fan_out() &&
                     tied_weight_.sizes() == torch::IntArrayRef({options.out_features(), options.in_features()}),
                 "a tied Linear needs a weight of shape [", options.out_features(), ", ", options.in_features(),
                 "] (out_features, in_features) and fan_in_fan_out=false");
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
  quantized_ = QuantizedWeight();
  const auto tensor_options = torch::TensorOptions().dtype(options.dtype());
  const auto shape = options.fan_in_fan_out()
                         ? std::vector<int64_t>{options.in_features(), options.out_features()}
                         : std::vector<int64_t>{options.out_features(), options.in_features()};
  if (tied_weight_.defined()) {
    weight = tied_weight_;
  } else if (new_linear_format != QuantFormat::none && !new_linear_initialise) {
    // No full-precision weight at all: an all-zero quantized one, which the loader (or the
    // model's initialisation) sets with set_quantized_weight.
    if (parameters_.contains("weight")) parameters_.erase("weight");
    weight = torch::Tensor();
    quantized_ = QuantizedWeight::zeros(new_linear_format, options.out_features(), options.in_features(),
                                        new_linear_double_quant);
  } else {
    weight = register_parameter("weight", torch::empty(shape, tensor_options), /*requires_grad=*/false);
  }
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty({options.out_features()}, tensor_options), false);
  } else {
    bias = register_parameter("bias", torch::Tensor(), false);
  }
  reset_parameters();
  if (new_linear_format != QuantFormat::none && new_linear_initialise && !tied_weight_.defined()) {
    quantize_(new_linear_format, new_linear_double_quant);
  }
}

void LinearImpl::reset_parameters() {
  // torch.nn.Linear's initialisation: kaiming-uniform(a = sqrt(5)) weight, U(±1/sqrt(in)) bias.
  at::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
  if (!tied_weight_.defined() && !quantized()) weight.uniform_(-bound, bound);  // tied: another module's
  if (bias.defined()) bias.uniform_(-bound, bound);
}

std::shared_ptr<torch::nn::Module> LinearImpl::clone(const c10::optional<torch::Device>& device) const {
  at::NoGradGuard no_grad;
  auto copy = std::make_shared<LinearImpl>(options);
  if (quantized()) {
    copy->parameters_.erase("weight");
    copy->weight = torch::Tensor();
    copy->quantized_ = quantized_;  // immutable: shared
  } else {
    copy->weight.copy_(weight);
    copy->weight.set_requires_grad(weight.requires_grad());
  }
  if (bias.defined()) {
    copy->bias.copy_(bias);
    copy->bias.set_requires_grad(bias.requires_grad());
  }
  for (const Adapter& a : adapters_) {
    copy->add_adapter_from_weights(a.name, a.options, a.lora_A, a.lora_B,
                                   a.magnitude);
    Adapter& c = copy->adapter(a.name);
    c.active = a.active;
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
  if (tied_weight_.defined()) stream << ", tied_weight=true";
  if (quantized()) {
    stream << ", quantize=" << quant_format_name(quantized_.format()) << (quantized_.double_quant() ? "+double_quant" : "");
  }
  if (!adapters_.empty()) {
    stream << ", adapters=[";
    for (size_t i = 0; i < adapters_.size(); ++i) {
      const Adapter& a = adapters_[i];
      stream << (i ? ", " : "") << a.name << ": r=" << a.options.r() << " " << a.variant->name();
      if (!a.active) stream << " inactive";
      if (is_merged(a.name)) stream << " merged";
    }
    stream << "]";
  }
  stream << ")";
}

// ---- forward -----------------------------------------------------------------------------------

torch::Tensor LinearImpl::base_forward(const torch::Tensor& x, const torch::Tensor& residual) const {
  if (quantized()) return functional::quantized_linear(x, quantized_, bias, residual, dequant_rows_per_chunk(quantized_));
  return functional::linear(x, weight_out_in(), bias, residual);
}

torch::Tensor LinearImpl::base_product(const torch::Tensor& x) const {
  if (quantized()) return functional::quantized_linear(x, quantized_, {}, {}, dequant_rows_per_chunk(quantized_));
  return functional::linear(x, weight_out_in());
}

bool LinearImpl::has_active_update() const {
  return adapters_enabled_ && !merged() &&
         std::any_of(adapters_.begin(), adapters_.end(), [](const Adapter& a) { return a.active; });
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
  const auto device = quantized() ? quantized_.codes().device() : weight.device();
  const auto tensor_options = torch::TensorOptions().dtype(dtype).device(device);

  Adapter a;
  a.name = name;
  a.options = adapter_options;
  a.options.dtype(dtype);
  a.scaling = adapter_options.scaling();
  a.variant = &variant_for(adapter_options);
  const int64_t r = adapter_options.r();
  a.lora_A = set_adapter_weight(kSlotA, name, torch::zeros({r, options.in_features()}, tensor_options), true);
  a.lora_B = set_adapter_weight(kSlotB, name, torch::zeros({options.out_features(), r}, tensor_options), true);
  if (adapter_options.use_dora()) {
    a.magnitude = set_adapter_weight(kSlotMagnitude, name, torch::ones({options.out_features()}, tensor_options), true);
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

torch::Tensor LinearImpl::set_adapter_weight(const std::string& slot, const std::string& name, torch::Tensor t,
                                             bool requires_grad) {
  auto holder = std::make_shared<torch::nn::Module>("AdapterWeight");
  torch::Tensor registered = holder->register_parameter("weight", std::move(t), requires_grad);
  torch::nn::Module& parent = adapter_slot(slot);
  if (parent.named_children().contains(name)) {
    parent.replace_module(name, holder);
  } else {
    parent.register_module(name, holder);
  }
  return registered;
}

void LinearImpl::share_adapter_weights(const std::string& name, const torch::Tensor& lora_A,
                                       const torch::Tensor& lora_B, const torch::Tensor& magnitude) {
  Adapter& a = adapter(name);
  auto check = [&](const char* what, const torch::Tensor& given, const torch::Tensor& own) {
    if (!own.defined()) {
      RANKTUNE_CHECK(!given.defined(), "adapter '", name, "': a ", what, " was given but the adapter has none");
      return;
    }
    RANKTUNE_CHECK(given.defined() && given.sizes() == own.sizes() && given.scalar_type() == own.scalar_type() &&
                       given.device() == own.device(),
                   "adapter '", name, "': ", what, " must be ", own.sizes(), " ", own.scalar_type(), " on ",
                   own.device(), ", got ",
                   given.defined() ? c10::str(given.sizes(), " ", given.scalar_type(), " on ", given.device())
                                   : std::string("none"));
  };
  check("lora_A", lora_A, a.lora_A);
  check("lora_B", lora_B, a.lora_B);
  check("magnitude", magnitude, a.magnitude);
  a.lora_A = set_adapter_weight(kSlotA, name, lora_A, lora_A.requires_grad());
  a.lora_B = set_adapter_weight(kSlotB, name, lora_B, lora_B.requires_grad());
  if (a.magnitude.defined()) a.magnitude = set_adapter_weight(kSlotMagnitude, name, magnitude, magnitude.requires_grad());
}

void LinearImpl::delete_adapter(const std::string& name) {
  auto it = std::find_if(adapters_.begin(), adapters_.end(), [&](const Adapter& a) { return a.name == name; });
  RANKTUNE_CHECK(it != adapters_.end(), "adapter '", name, "' does not exist on this layer");
  if (is_merged(name)) unmerge();
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
  for (const std::string& name : targets) adapter(name);  // unknown names throw before anything changes
  at::NoGradGuard no_grad;
  // A quantized base is dequantized first: the adapters were trained on the dequantized weight,
  // and a merged weight is no longer on the quantisation grid.
  if (quantized() && !targets.empty()) dequantize_();
  const size_t merged_before = merged_order_.size();
  try {
    for (const std::string& name : targets) {
      if (is_merged(name)) continue;
      Adapter& a = adapter(name);
      if (safe) {
        torch::Tensor candidate = weight.clone();
        const torch::Tensor saved_norm = a.merged_weight_norm;
        a.variant->merge(*this, a, candidate);
        if (!at::isfinite(candidate).all().item<bool>()) {
          a.merged_weight_norm = saved_norm;
          throw Error(c10::str("merging adapter '", name, "' gives NaN or Inf weights; the layer was left unchanged"));
        }
        weight.copy_(candidate);
      } else {
        a.variant->merge(*this, a, weight);
      }
      merged_order_.push_back(name);
    }
  } catch (...) {
    unmerge_newest(merged_order_.size() - merged_before);  // all of this call's merges or none
    throw;
  }
}

void LinearImpl::unmerge() { unmerge_newest(merged_order_.size()); }

void LinearImpl::unmerge_newest(size_t count) {
  TORCH_INTERNAL_ASSERT(count <= merged_order_.size());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < count; ++i) {
    Adapter& a = adapter(merged_order_.back());
    a.variant->unmerge(*this, a, weight);
    merged_order_.pop_back();
  }
}

bool LinearImpl::is_merged(const std::string& name) const {
  return std::find(merged_order_.begin(), merged_order_.end(), name) != merged_order_.end();
}

void LinearImpl::unload() {
  merged_order_.clear();  // merged adapters stay folded into the weight
  while (!adapters_.empty()) delete_adapter(adapters_.back().name);
}

void LinearImpl::untie(const torch::Tensor& own) {
  RANKTUNE_CHECK(tied_weight_.defined(), "untie: the layer's weight is its own already");
  RANKTUNE_CHECK(own.sizes() == tied_weight_.sizes(), "untie: weight of shape ", own.sizes(), ", expected ",
                 tied_weight_.sizes());
  weight = register_parameter("weight", own, /*requires_grad=*/false);
  tied_weight_ = torch::Tensor();
}

// ---- quantized base ------------------------------------------------------------------------------

QuantizeNewLinears::QuantizeNewLinears(QuantFormat format, bool double_quant, bool initialise)
    : previous_format_(new_linear_format),
      previous_double_quant_(new_linear_double_quant),
      previous_initialise_(new_linear_initialise) {
  new_linear_format = format;
  new_linear_double_quant = double_quant;
  new_linear_initialise = initialise;
}

QuantizeNewLinears::~QuantizeNewLinears() {
  new_linear_format = previous_format_;
  new_linear_double_quant = previous_double_quant_;
  new_linear_initialise = previous_initialise_;
}

void LinearImpl::quantize_(QuantFormat format, bool double_quant) {
  RANKTUNE_CHECK(format != QuantFormat::none, "quantize_: no format given (int8 or nf4)");
  RANKTUNE_CHECK(!quantized(), "the base weight is quantized already (", quant_format_name(quantized_.format()), ")");
  RANKTUNE_CHECK(!tied_weight_.defined(),
                 "a Linear whose weight is another module's (an output head tied to the embeddings) is not quantized");
  RANKTUNE_CHECK(!merged(), "cannot quantize a layer with merged adapters (unmerge first)");
  RANKTUNE_CHECK(!weight.requires_grad(), "cannot quantize a base weight that trains");
  quantized_ = QuantizedWeight::quantize(weight_out_in(), format, double_quant);
  parameters_.erase("weight");
  weight = torch::Tensor();
  row_sq_norm_ = torch::Tensor();
  row_sq_norm_data_ = nullptr;
}

void LinearImpl::set_quantized_weight(const torch::Tensor& w) {
  RANKTUNE_CHECK(quantized(), "set_quantized_weight: the layer is not quantized");
  const auto shape = quantized_weight_shape(options);
  RANKTUNE_CHECK(w.defined() && w.sizes() == torch::IntArrayRef(shape), "weight of shape ",
                 w.defined() ? c10::str(w.sizes()) : std::string("none"), ", expected ", torch::IntArrayRef(shape));
  quantized_ = QuantizedWeight::quantize(options.fan_in_fan_out() ? w.t() : w, quantized_.format(),
                                         quantized_.double_quant());
  row_sq_norm_ = torch::Tensor();
  row_sq_norm_data_ = nullptr;
}

void LinearImpl::dequantize_() {
  RANKTUNE_CHECK(quantized(), "dequantize_: the layer is not quantized");
  at::NoGradGuard no_grad;
  torch::Tensor dense = quantized_.dequantize(options.dtype());
  if (options.fan_in_fan_out()) dense = dense.t().contiguous();
  weight = register_parameter("weight", dense, /*requires_grad=*/false);
  quantized_ = QuantizedWeight();
  row_sq_norm_ = torch::Tensor();
  row_sq_norm_data_ = nullptr;
}

torch::Tensor LinearImpl::dense_weight(torch::Dtype dtype) const {
  if (quantized()) return quantized_.dequantize(dtype);
  return weight_out_in().to(dtype);
}

int64_t LinearImpl::base_weight_nbytes() const {
  if (quantized()) return quantized_.nbytes();
  return tied_weight_.defined() ? 0 : static_cast<int64_t>(weight.nbytes());
}

torch::Tensor LinearImpl::delta_weight(const std::string& name) const {
  const Adapter& a = adapter(name);
  at::NoGradGuard no_grad;
  torch::Tensor delta = quantized() ? torch::zeros(quantized_weight_shape(options),
                                                   torch::TensorOptions().dtype(options.dtype()))
                                     : torch::zeros_like(weight);
  add_delta_weight_(*this, a, delta, +1.0);
  return delta;
}

// ---- DoRA --------------------------------------------------------------------------------------

const torch::Tensor& LinearImpl::weight_row_sq_norm() const {
  if (quantized()) {
    // The quantized weight never changes in place: computed once, from row chunks.
    if (!row_sq_norm_.defined() || row_sq_norm_data_ != quantized_.codes().data_ptr()) {
      at::NoGradGuard no_grad;
      row_sq_norm_ = at::empty({quantized_.rows()}, torch::TensorOptions().dtype(options.dtype()));
      const int64_t step = dequant_rows_per_chunk(quantized_);
      for (int64_t first = 0; first < quantized_.rows(); first += step) {
        const int64_t count = std::min(step, quantized_.rows() - first);
        row_sq_norm_.narrow(0, first, count)
            .copy_(at::linalg_vector_norm(quantized_.dequantize(first, count, options.dtype()), 2, {1}, false,
                                          c10::nullopt)
                       .square_());
      }
      row_sq_norm_data_ = quantized_.codes().data_ptr();
    }
    return row_sq_norm_;
  }
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
  // In the weight's dtype also under autocast: PEFT's norm of W + s·B A is fp32 for an fp32 W, and
  // ‖W‖² rounded to bf16 would move every magnitude's scale by ~0.4%.
  const NoCpuAutocast no_autocast;
  if (quantized()) {
    // W Aᵀ = (A Wᵀ)ᵀ through the quantized product: row chunks, no out×in temporary.
    at::NoGradGuard no_grad;
    const torch::Tensor wa = base_product(a.lora_A.detach().to(options.dtype())).t();
    return functional::dora_weight_norm_from_product(wa, weight_row_sq_norm(), a.lora_A, a.lora_B, a.scaling);
  }
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
