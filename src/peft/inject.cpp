#include "ranktune/peft/inject.h"

#include "variant.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/peft/modules_to_save.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace ranktune::peft {
namespace {

std::string with_thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string some_names(const std::vector<NamedLinear>& linears, size_t limit) {
  std::string out;
  for (size_t i = 0; i < linears.size() && i < limit; ++i) out += (i ? ", " : "") + linears[i].first;
  if (linears.size() > limit) out += c10::str(", ... (", linears.size(), " in all)");
  return out.empty() ? std::string("(the model has no ranktune::peft::Linear layers)") : out;
}

std::string describe(const ModuleSelector& s) {
  switch (s.kind) {
    case ModuleSelector::Kind::none: return "(not set)";
    case ModuleSelector::Kind::all_linear: return "\"all-linear\"";
    case ModuleSelector::Kind::regex: return "regex \"" + s.regex + "\"";
    case ModuleSelector::Kind::names: {
      std::string out = "[";
      for (size_t i = 0; i < s.names.size(); ++i) out += (i ? ", " : "") + s.names[i];
      return out + "]";
    }
  }
  return "";
}

bool is_bias_name(const std::string& name) { return name == "bias" || name_matches_suffix(name, "bias"); }

bool inside_any(const std::string& name, const std::vector<std::string>& modules) {
  return std::any_of(modules.begin(), modules.end(),
                     [&](const std::string& m) { return name == m || starts_with(name, m + "."); });
}

// The adapter whose modules_to_save copies the model computes with: the active one that has
// copies, while adapters are enabled.
std::optional<std::string> first_with_copies(const torch::nn::Module& root, const std::vector<std::string>& active) {
  const auto with_copies = adapters_with_saved_modules(root);
  for (const auto& a : active) {
    if (std::find(with_copies.begin(), with_copies.end(), a) != with_copies.end()) return a;
  }
  return std::nullopt;
}

std::optional<std::string> saved_modules_adapter(const torch::nn::Module& root) {
  if (!adapters_enabled(root)) return std::nullopt;
  return first_with_copies(root, active_adapters(root));
}

}  // namespace

std::string ParameterCounts::summary() const {
  char percent[32];
  std::snprintf(percent, sizeof(percent), "%.4f", trainable_percent());
  return "trainable params: " + with_thousands(trainable) + " || all params: " + with_thousands(total) +
         " || trainable%: " + percent;
}

ParameterCounts count_parameters(const torch::nn::Module& root) {
  ParameterCounts counts;
  std::set<const c10::TensorImpl*> seen;
  for (const auto& p : root.parameters()) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    counts.total += p.numel();
    if (p.requires_grad()) counts.trainable += p.numel();
  }
  // A quantized base weight is no parameter, but still one of the model's weights.
  for (const auto& [name, linear] : find_linears(root)) {
    if (linear->quantized()) counts.total += linear->quantized_weight().numel();
  }
  return counts;
}

void mark_trainable(torch::nn::Module& root, const LoraConfig& config, const std::vector<std::string>& active) {
  const auto linears = find_linears(root);
  for (auto& item : root.named_parameters()) item.value().set_requires_grad(false);
  const bool train = !config.inference_mode();
  if (train) {
    for (auto& [name, linear] : linears) {
      for (const std::string& adapter_name : linear->adapter_names()) {
        Adapter& a = linear->adapter(adapter_name);
        const bool active_here = std::find(active.begin(), active.end(), adapter_name) != active.end();
        a.lora_A.set_requires_grad(active_here);
        a.lora_B.set_requires_grad(active_here);
        if (a.magnitude.defined()) a.magnitude.set_requires_grad(active_here);
        if (active_here && config.bias() == LoraBias::lora_only && linear->bias.defined()) {
          linear->bias.set_requires_grad(true);
        }
      }
    }
    if (config.bias() == LoraBias::all) {
      for (auto& item : root.named_parameters()) {
        if (is_bias_name(item.key())) item.value().set_requires_grad(true);
      }
    }
  }
  mark_saved_modules_trainable(root, first_with_copies(root, active), train);
}

InjectReport inject(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter_name,
                    const InjectOptions& options) {
  const ModelView view = view_of(root, options.output_head());
  const auto& linears = view.layers;
  const TargetMatcher matcher(config, view.layer_names(), view.output_head);
  RANKTUNE_CHECK(config.target_modules().kind != ModuleSelector::Kind::none,
                 "target_modules is not set: name the modules to adapt (e.g. [\"q_proj\", \"v_proj\"] or "
                 "\"all-linear\"); this model has: ", some_names(linears, 8));
  // As PEFT: a module in modules_to_save gets a copy instead of an adapter.
  const SavedModulesPlan saved = plan_saved_modules(root, config);
  const std::vector<std::string> saved_elsewhere = modules_with_copies(root);

  std::vector<NamedLinear> targets;
  for (const auto& item : linears) {
    if (!matcher.is_target(item.first) || inside_any(item.first, saved.modules)) continue;
    RANKTUNE_CHECK(!item.second->has_adapter(adapter_name), "adapter '", adapter_name, "' already exists on ",
                   item.first, "; delete it first or choose another name");
    RANKTUNE_CHECK(!inside_any(item.first, saved_elsewhere), item.first, " has a modules_to_save copy of another "
                   "adapter; a layer is either adapted or saved");
    targets.push_back(item);
  }
  RANKTUNE_CHECK(!targets.empty(), "target_modules ", describe(config.target_modules()),
                 " matched no adaptable linear layer", config.exclude_modules().empty() ? "" : " (after exclude_modules)",
                 "; some module names that exist: ", some_names(linears, 12));

  InjectReport report;
  report.adapter_name = adapter_name;
  std::vector<NamedLinear> done;
  try {
    for (auto& [name, linear] : targets) {
      if (config.fan_in_fan_out() != linear->options.fan_in_fan_out()) {
        log_warning(c10::str(name, ": fan_in_fan_out=", config.fan_in_fan_out() ? "true" : "false",
                             " in the config, but the layer stores its weight as ",
                             linear->options.fan_in_fan_out() ? "[in, out]" : "[out, in]",
                             "; the layer's layout is used"));
      }
      try {
        linear->add_adapter(adapter_name, matcher.adapter_options_for(name));
      } catch (const Error& e) {
        throw Error(c10::str(name, ": ", e.message()), e.context());
      }
      done.push_back({name, linear});
      report.adapted_modules.push_back(name);
    }
    report.modules_to_save = add_saved_modules(root, config, adapter_name).modules;
  } catch (...) {
    // Leave the model as it was: PiSSA/OLoRA moved part of W into the adapter, so put it back.
    for (auto& [name, linear] : done) {
      if (config.init_lora_weights().rewrites_base_weight()) {
        add_delta_weight_(*linear, linear->adapter(adapter_name), linear->weight, +1.0);
      }
      linear->delete_adapter(adapter_name);
    }
    throw;
  }
  for (auto& [name, linear] : done) {
    if (linear->weight_is_tied()) {
      log_warning(name + " shares its weight with another module (tied embeddings): merging adapter '" + adapter_name +
                  "' into it changes both, as in PEFT");
    }
  }
  if (config.modules_to_save() && report.modules_to_save.empty()) log_warning("modules_to_save matched no module");
  use_saved_modules(root, saved_modules_adapter(root));
  mark_trainable(root, config, active_adapters(root));
  report.parameters = count_parameters(root);
  return report;
}

// ---- operations on every layer -------------------------------------------------------------------

std::vector<std::string> active_adapters(const torch::nn::Module& root) {
  std::vector<std::string> active;
  for (const auto& item : find_linears(root)) {
    for (const auto& a : item.second->active_adapters()) {
      if (std::find(active.begin(), active.end(), a) == active.end()) active.push_back(a);
    }
  }
  return active;
}

bool adapters_enabled(const torch::nn::Module& root) {
  const auto linears = find_linears(root);
  return std::any_of(linears.begin(), linears.end(), [](const NamedLinear& l) { return l.second->adapters_enabled(); }) ||
         linears.empty();
}

void set_active_adapters(torch::nn::Module& root, const std::vector<std::string>& names) {
  RANKTUNE_CHECK(names.size() <= 1 || !has_saved_modules(root),
                 "only one adapter can be active at a time when the model has modules_to_save copies (as in PEFT); "
                 "got ", names.size());
  for (auto& [name, linear] : find_linears(root)) linear->set_active_adapters(names);
  use_saved_modules(root, saved_modules_adapter(root));
}

void set_adapters_enabled(torch::nn::Module& root, bool enabled) {
  for (auto& [name, linear] : find_linears(root)) linear->set_adapters_enabled(enabled);
  use_saved_modules(root, saved_modules_adapter(root));
}

void delete_adapter(torch::nn::Module& root, const std::string& adapter_name) {
  const auto with_copies = adapters_with_saved_modules(root);
  bool found = std::find(with_copies.begin(), with_copies.end(), adapter_name) != with_copies.end();
  for (auto& [name, linear] : find_linears(root)) {
    if (linear->has_adapter(adapter_name)) {
      linear->delete_adapter(adapter_name);
      found = true;
    }
  }
  RANKTUNE_CHECK(found, "adapter '", adapter_name, "' does not exist in this model");
  delete_saved_modules(root, adapter_name);
  use_saved_modules(root, saved_modules_adapter(root));
}

void merge_adapters(torch::nn::Module& root, bool safe, const std::vector<std::string>& names) {
  std::vector<std::pair<LinearImpl*, size_t>> merged_here;  // layer, how many merges this call made on it
  for (auto& [name, linear] : find_linears(root)) {
    std::vector<std::string> present;
    for (const auto& n : names.empty() ? linear->active_adapters() : names) {
      if (linear->has_adapter(n) && !linear->is_merged(n)) present.push_back(n);
    }
    if (present.empty()) continue;
    const size_t before = linear->merged_adapters().size();
    try {
      linear->merge(safe, present);  // all of these or, on failure, none
    } catch (const Error& e) {
      for (auto it = merged_here.rbegin(); it != merged_here.rend(); ++it) it->first->unmerge_newest(it->second);
      throw Error(c10::str(name, ": ", e.message()), e.context());
    }
    merged_here.emplace_back(linear.get(), linear->merged_adapters().size() - before);
  }
}

void unmerge_adapters(torch::nn::Module& root) {
  for (auto& [name, linear] : find_linears(root)) linear->unmerge();
}

void unload(torch::nn::Module& root) {
  unload_saved_modules(root, saved_modules_adapter(root));
  for (auto& [name, linear] : find_linears(root)) linear->unload();
}

void merge_and_unload(torch::nn::Module& root, bool safe) {
  merge_adapters(root, safe);
  unload(root);
}

void copy_adapter_weights(torch::nn::Module& root, const std::string& from, const std::string& to) {
  at::NoGradGuard no_grad;
  for (auto& [name, linear] : find_linears(root)) {
    if (!linear->has_adapter(from)) continue;
    const Adapter& source = linear->adapter(from);
    Adapter& target = linear->adapter(to);
    target.lora_A.copy_(source.lora_A);
    target.lora_B.copy_(source.lora_B);
    if (target.magnitude.defined()) target.magnitude.copy_(source.magnitude);
  }
  std::map<std::string, torch::Tensor> targets;
  for (auto& [name, t] : saved_module_tensors(root, to)) targets.emplace(name, t);
  for (auto& [name, t] : saved_module_tensors(root, from)) {
    auto it = targets.find(name);
    RANKTUNE_CHECK(it != targets.end(), "adapter '", to, "' has no modules_to_save copy of ", name);
    it->second.copy_(t);
  }
}

}  // namespace ranktune::peft
