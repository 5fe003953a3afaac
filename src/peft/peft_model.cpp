#include "ranktune/peft/peft_model.h"

#include "ranktune/core/error.h"
#include "ranktune/peft/modules_to_save.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>

namespace ranktune::peft {
namespace {

// PEFT's target union for add_weighted_adapter: lists are joined, regexes alternated.
ModuleSelector union_of_targets(const std::vector<const LoraConfig*>& configs) {
  const ModuleSelector& first = configs[0]->target_modules();
  for (const LoraConfig* c : configs) {
    RANKTUNE_CHECK(c->target_modules().kind == first.kind,
                   "add_weighted_adapter: all adapters' target_modules must be of one kind (all lists, all "
                   "regexes or all \"all-linear\")");
  }
  if (first.kind == ModuleSelector::Kind::names) {
    std::vector<std::string> names;
    for (const LoraConfig* c : configs) {
      for (const auto& n : c->target_modules().names) {
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
      }
    }
    return ModuleSelector(names);
  }
  if (first.kind == ModuleSelector::Kind::regex) {
    std::string joined;
    for (const LoraConfig* c : configs) joined += (joined.empty() ? "(" : "|(") + c->target_modules().regex + ")";
    return ModuleSelector::from_string(joined);
  }
  return first;
}

}  // namespace

PeftModel::PeftModel(std::shared_ptr<torch::nn::Module> model, const LoraConfig& config,
                     const std::string& adapter_name, InjectOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  RANKTUNE_CHECK(model_ != nullptr, "PeftModel needs a model");
  const LoraConfig recorded = with_model_provenance(config, *model_);
  inject(*model_, recorded, adapter_name, options_);
  configs_.emplace(adapter_name, recorded);
  set_active_adapters(*model_, {adapter_name});
  mark_trainable(*model_, recorded, {adapter_name});
}

PeftModel::PeftModel(std::shared_ptr<torch::nn::Module> model, InjectOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  RANKTUNE_CHECK(model_ != nullptr, "PeftModel needs a model");
}

PeftModel PeftModel::from_pretrained(std::shared_ptr<torch::nn::Module> model, const std::string& dir,
                                     const std::string& adapter_name, bool is_trainable, InjectOptions options) {
  PeftModel peft(std::move(model), std::move(options));
  AdapterLoadReport report = ::ranktune::peft::load_adapter(*peft.model_, dir, adapter_name, is_trainable, peft.options_);
  peft.configs_.emplace(adapter_name, report.config);
  set_active_adapters(*peft.model_, {adapter_name});
  return peft;
}

AdapterLoadReport PeftModel::load_adapter(const std::string& dir, const std::string& adapter_name, bool is_trainable) {
  RANKTUNE_CHECK(configs_.count(adapter_name) == 0, "adapter '", adapter_name, "' already exists");
  const std::vector<std::string> active = active_adapters();
  AdapterLoadReport report = ::ranktune::peft::load_adapter(*model_, dir, adapter_name, is_trainable, options_);
  configs_.emplace(adapter_name, report.config);
  restore_active(active);  // as PEFT: loading does not activate
  return report;
}

void PeftModel::save_pretrained(const std::string& dir, const std::vector<std::string>& which) const {
  const std::vector<std::string> names = which.empty() ? adapter_names() : which;
  for (const auto& name : names) {
    const std::string target = name == "default" ? dir : (std::filesystem::path(dir) / name).string();
    save_adapter(*model_, config(name), name, target);
  }
}

InjectReport PeftModel::add_adapter(const std::string& adapter_name, const LoraConfig& config) {
  RANKTUNE_CHECK(configs_.count(adapter_name) == 0, "adapter '", adapter_name, "' already exists");
  // As in PEFT: trained biases would be shared by all adapters, so bias != "none" allows only one.
  const bool any_bias = config.bias() != LoraBias::none ||
                        std::any_of(configs_.begin(), configs_.end(),
                                    [](const auto& item) { return item.second.bias() != LoraBias::none; });
  RANKTUNE_CHECK(configs_.empty() || !any_bias,
                 "a config with bias other than \"none\" is only supported with a single adapter (as in PEFT)");
  const std::vector<std::string> active = active_adapters();
  const LoraConfig recorded = with_model_provenance(config, *model_);
  InjectReport report = inject(*model_, recorded, adapter_name, options_);
  configs_.emplace(adapter_name, recorded);
  restore_active(active);  // PEFT: adding does not activate
  report.parameters = count_parameters(*model_);
  return report;
}

void PeftModel::set_adapter(const std::string& adapter_name) { set_adapter(std::vector<std::string>{adapter_name}); }

void PeftModel::set_adapter(const std::vector<std::string>& adapter_names) {
  RANKTUNE_CHECK(!adapter_names.empty(), "set_adapter needs at least one adapter name");
  for (const auto& name : adapter_names) config(name);  // throws for unknown names
  set_active_adapters(*model_, adapter_names);
  mark_trainable(*model_, configs_.at(adapter_names[0]), adapter_names);
}

std::vector<std::string> PeftModel::active_adapters() const {
  std::vector<std::string> active = ::ranktune::peft::active_adapters(*model_);
  // Only adapters this PeftModel holds (another PeftModel on the same model may hold others).
  active.erase(std::remove_if(active.begin(), active.end(), [&](const std::string& a) { return configs_.count(a) == 0; }),
               active.end());
  return active;
}

bool PeftModel::adapters_enabled() const { return ::ranktune::peft::adapters_enabled(*model_); }

void PeftModel::restore_active(const std::vector<std::string>& active) {
  set_active_adapters(*model_, active);
  if (!active.empty()) mark_trainable(*model_, configs_.at(active[0]), active);
}

void PeftModel::delete_adapter(const std::string& adapter_name) {
  config(adapter_name);
  ::ranktune::peft::delete_adapter(*model_, adapter_name);
  configs_.erase(adapter_name);
  // As PEFT: deleting the active adapter activates the first one left.
  if (active_adapters().empty() && !configs_.empty()) set_adapter(configs_.begin()->first);
}

std::vector<std::string> PeftModel::adapter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, config] : configs_) names.push_back(name);
  return names;
}

const LoraConfig& PeftModel::config(const std::string& adapter_name) const {
  auto it = configs_.find(adapter_name);
  if (it == configs_.end()) {
    std::string known;
    for (const auto& [name, c] : configs_) known += (known.empty() ? "" : ", ") + name;
    throw Error(c10::str("adapter '", adapter_name, "' does not exist; adapters: ", known.empty() ? "(none)" : known));
  }
  return it->second;
}

void PeftModel::enable_adapters() { set_adapters_enabled(*model_, true); }

void PeftModel::disable_adapters() { set_adapters_enabled(*model_, false); }

void PeftModel::merge_adapter(bool safe, const std::vector<std::string>& adapter_names) {
  for (const auto& name : adapter_names) config(name);
  merge_adapters(*model_, safe, adapter_names.empty() ? active_adapters() : adapter_names);
}

void PeftModel::unmerge_adapter() { unmerge_adapters(*model_); }

std::shared_ptr<torch::nn::Module> PeftModel::merge_and_unload(bool safe) {
  ::ranktune::peft::merge_and_unload(*model_, safe);
  configs_.clear();
  return model_;
}

std::shared_ptr<torch::nn::Module> PeftModel::unload() {
  ::ranktune::peft::unload(*model_);
  configs_.clear();
  return model_;
}

void PeftModel::add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                                     const std::string& new_name, const WeightedAdapterOptions& options) {
  RANKTUNE_CHECK(!adapters.empty(), "add_weighted_adapter needs at least one adapter");
  RANKTUNE_CHECK(adapters.size() == weights.size(), "add_weighted_adapter: ", adapters.size(), " adapters but ",
                 weights.size(), " weights");
  RANKTUNE_CHECK(configs_.count(new_name) == 0, "adapter '", new_name, "' already exists");
  std::vector<const LoraConfig*> sources;
  for (const auto& name : adapters) sources.push_back(&config(name));
  std::set<std::string> copied;  // modules_to_save copies of the sources cannot be combined
  for (const auto& name : adapters) {
    for (const auto& [module, t] : saved_module_tensors(*model_, name)) {
      RANKTUNE_CHECK(copied.insert(module).second, "add_weighted_adapter: more than one of the adapters has a "
                     "modules_to_save copy of ", module, "; copies cannot be combined (as in PEFT)");
    }
  }
  // PEFT: a single adapter is always combined linearly.
  WeightedAdapterOptions resolved = options;
  if (adapters.size() == 1) resolved.combination_type(CombinationType::linear);

  int64_t new_rank = 0;
  switch (resolved.combination_type()) {
    case CombinationType::linear:
      new_rank = sources[0]->r();
      for (const LoraConfig* c : sources) {
        RANKTUNE_CHECK(c->r() == new_rank, "add_weighted_adapter: combination 'linear' needs all adapters to have the "
                       "same r; use 'cat' or 'svd' for different ranks");
        RANKTUNE_CHECK(c->rank_pattern().empty(), "add_weighted_adapter: combination 'linear' needs one rank per "
                       "adapter, but an adapter has a rank_pattern; use 'cat' or 'svd'");
      }
      break;
    case CombinationType::cat:
      for (const LoraConfig* c : sources) {
        RANKTUNE_CHECK(c->rank_pattern().empty(), "add_weighted_adapter: 'cat' needs one rank per adapter, but an "
                       "adapter has a rank_pattern; use 'svd'");
        new_rank += c->r();
      }
      break;
    case CombinationType::svd:
      if (resolved.svd_rank()) {
        new_rank = *resolved.svd_rank();
      } else {
        for (const LoraConfig* c : sources) new_rank = std::max(new_rank, c->r());
      }
      RANKTUNE_CHECK(new_rank > 0, "svd_rank must be positive, got ", new_rank);
      break;
  }

  const std::vector<std::string> active = active_adapters();
  LoraConfig new_config = *sources[0];
  new_config.r(new_rank).lora_alpha(static_cast<double>(new_rank)).target_modules(union_of_targets(sources));
  new_config.rank_pattern({}).alpha_pattern({}).use_dora(false).init_lora_weights(LoraInit());

  std::vector<NamedLinear> done;
  try {
    for (auto& [name, linear] : find_linears(*model_)) {
      const bool has_source = std::any_of(adapters.begin(), adapters.end(),
                                          [&](const std::string& a) { return linear->has_adapter(a); });
      if (!has_source) continue;
      try {
        add_weighted_adapter_to_layer(*linear, adapters, weights, new_name, new_rank, new_config.use_rslora(), resolved);
      } catch (const Error& e) {
        throw Error(c10::str(name, ": ", e.message()), e.context());
      }
      done.push_back({name, linear});
    }
    add_saved_modules(*model_, new_config, new_name);
  } catch (...) {
    for (auto& item : done) item.second->delete_adapter(new_name);
    throw;
  }
  configs_.emplace(new_name, new_config);
  restore_active(active);
}

}  // namespace ranktune::peft
