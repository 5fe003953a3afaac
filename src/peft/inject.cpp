#include "ranktune/peft/inject.h"

#include "variant.h"
#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>

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

}  // namespace

std::string ParameterCounts::summary() const {
  char percent[32];
  std::snprintf(percent, sizeof(percent), "%.4f", trainable_percent());
  return "trainable params: " + with_thousands(trainable) + " || all params: " + with_thousands(total) +
         " || trainable%: " + percent;
}

std::vector<NamedLinear> find_linears(const torch::nn::Module& root) {
  std::vector<NamedLinear> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    if (auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value())) out.emplace_back(item.key(), linear);
  }
  return out;
}

ParameterCounts count_parameters(const torch::nn::Module& root) {
  ParameterCounts counts;
  for (const auto& p : root.parameters()) {
    counts.total += p.numel();
    if (p.requires_grad()) counts.trainable += p.numel();
  }
  return counts;
}

void mark_trainable(torch::nn::Module& root, const LoraConfig& config, const std::vector<std::string>& active,
                    const InjectOptions& options) {
  const auto linears = find_linears(root);
  for (auto& item : root.named_parameters()) item.value().set_requires_grad(false);
  if (!config.inference_mode()) {
    for (auto& [name, linear] : linears) {
      for (const std::string& adapter_name : linear->adapter_names()) {
        Adapter& a = linear->adapter(adapter_name);
        const bool train = std::find(active.begin(), active.end(), adapter_name) != active.end();
        a.lora_A.set_requires_grad(train);
        a.lora_B.set_requires_grad(train);
        if (a.magnitude.defined()) a.magnitude.set_requires_grad(train);
        if (train && config.bias() == LoraBias::lora_only && linear->bias.defined()) {
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
  if (config.modules_to_save()) {
    const TargetMatcher matcher(config, {}, options.output_head());
    for (const auto& item : root.named_modules("", /*include_self=*/false)) {
      if (!matcher.is_module_to_save(item.key())) continue;
      for (auto& p : item.value()->parameters()) p.set_requires_grad(!config.inference_mode());
    }
  }
}

InjectReport inject(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter_name,
                    const InjectOptions& options) {
  const auto linears = find_linears(root);
  std::vector<std::string> linear_names;
  for (const auto& item : linears) linear_names.push_back(item.first);
  const TargetMatcher matcher(config, linear_names, options.output_head());
  RANKTUNE_CHECK(config.target_modules().kind != ModuleSelector::Kind::none,
                 "target_modules is not set: name the modules to adapt (e.g. [\"q_proj\", \"v_proj\"] or "
                 "\"all-linear\"); this model has: ", some_names(linears, 8));

  std::vector<NamedLinear> targets;
  for (const auto& item : linears) {
    if (matcher.is_target(item.first)) {
      RANKTUNE_CHECK(!item.second->has_adapter(adapter_name), "adapter '", adapter_name, "' already exists on ",
                     item.first, "; delete it first or choose another name");
      targets.push_back(item);
    }
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

  std::vector<std::string> active;
  for (const auto& item : linears) {
    for (const auto& a : item.second->active_adapters()) {
      if (std::find(active.begin(), active.end(), a) == active.end()) active.push_back(a);
    }
  }
  mark_trainable(root, config, active, options);
  if (config.modules_to_save()) {
    for (const auto& item : root.named_modules("", /*include_self=*/false)) {
      if (matcher.is_module_to_save(item.key())) report.modules_to_save.push_back(item.key());
    }
    if (report.modules_to_save.empty()) log_warning("modules_to_save matched no module");
  }
  report.parameters = count_parameters(root);
  return report;
}

// ---- operations on every layer -------------------------------------------------------------------

void set_active_adapters(torch::nn::Module& root, const std::vector<std::string>& names) {
  for (auto& [name, linear] : find_linears(root)) linear->set_active_adapters(names);
}

void set_adapters_enabled(torch::nn::Module& root, bool enabled) {
  for (auto& [name, linear] : find_linears(root)) linear->set_adapters_enabled(enabled);
}

void delete_adapter(torch::nn::Module& root, const std::string& adapter_name) {
  bool found = false;
  for (auto& [name, linear] : find_linears(root)) {
    if (linear->has_adapter(adapter_name)) {
      linear->delete_adapter(adapter_name);
      found = true;
    }
  }
  RANKTUNE_CHECK(found, "adapter '", adapter_name, "' does not exist in this model");
}

void merge_adapters(torch::nn::Module& root, bool safe, const std::vector<std::string>& names) {
  std::vector<NamedLinear> done;
  for (auto& [name, linear] : find_linears(root)) {
    std::vector<std::string> present;
    for (const auto& n : names.empty() ? linear->active_adapters() : names) {
      if (linear->has_adapter(n) && !linear->adapter(n).merged) present.push_back(n);
    }
    if (present.empty()) continue;
    try {
      linear->merge(safe, present);
      done.push_back({name, linear});
    } catch (const Error& e) {
      for (auto& item : done) item.second->unmerge();  // all layers or none
      throw Error(c10::str(name, ": ", e.message()), e.context());
    }
  }
}

void unmerge_adapters(torch::nn::Module& root) {
  for (auto& [name, linear] : find_linears(root)) linear->unmerge();
}

void merge_and_unload(torch::nn::Module& root, bool safe) {
  merge_adapters(root, safe);
  for (auto& [name, linear] : find_linears(root)) linear->unload();
}

}  // namespace ranktune::peft
