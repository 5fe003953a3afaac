#include "ranktune/peft/adapter_io.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/peft/modules_to_save.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

namespace ranktune::peft {
namespace {

namespace fs = std::filesystem;

const char* const kWeightsFile = "adapter_model.safetensors";

// A trained bias saved with the adapter: its parameter, PEFT's name for it ("<layer>.base_layer.bias"
// for a layer the adapter wraps, the parameter's own name otherwise) and, for an adapted layer,
// the name ranktune wrote before it followed PEFT ("<layer>.bias").
struct SavedBias {
  std::string name;
  std::string legacy_name;  // "" when the same
  torch::Tensor parameter;
  bool of_adapted_layer;
};

bool is_bias(const std::string& parameter) { return parameter == "bias" || ends_with(parameter, ".bias"); }

std::vector<SavedBias> saved_biases(const torch::nn::Module& model, const LoraConfig& config,
                                    const std::vector<std::string>& adapted, const std::vector<std::string>& saved_modules) {
  std::vector<SavedBias> out;
  if (config.bias() == LoraBias::none) return out;
  for (const auto& p : model.named_parameters()) {
    const std::string& name = p.key();
    if (!is_bias(name) || name.find("lora_") != std::string::npos || is_inside_saved_copies(name)) continue;
    const std::string owner = name == "bias" ? "" : name.substr(0, name.size() - 5);
    const bool in_saved = std::any_of(saved_modules.begin(), saved_modules.end(), [&](const std::string& m) {
      return owner == m || starts_with(owner, m + ".");
    });
    if (in_saved) continue;  // the copy carries it
    const bool of_adapted = std::find(adapted.begin(), adapted.end(), owner) != adapted.end();
    if (config.bias() == LoraBias::lora_only && !of_adapted) continue;
    if (of_adapted) out.push_back({owner + ".base_layer.bias", name, p.value(), true});
    else out.push_back({name, "", p.value(), false});
  }
  return out;
}

// "a, b, c, d, e and 7 more"
std::string first_few(const std::vector<std::string>& items, size_t limit = 5) {
  const size_t shown = std::min(items.size(), limit);
  std::string out = join(std::vector<std::string>(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(shown)));
  if (items.size() > shown) out += c10::str(" and ", items.size() - shown, " more");
  return out;
}

std::vector<int64_t> shape_of(const io::SafetensorsFile& file, const std::string& key) { return file.info(key).shape; }

}  // namespace

std::string peft_adapter_key(const std::string& module, const std::string& kind) {
  if (kind == "lora_magnitude_vector") return "base_model.model." + module + ".lora_magnitude_vector";
  return "base_model.model." + module + "." + kind + ".weight";
}

std::string peft_parameter_key(const std::string& parameter) { return "base_model.model." + parameter; }

LoraConfig with_model_provenance(LoraConfig config, const torch::nn::Module& model) {
  const ModelView view = view_of(model);
  if (!config.base_model_name_or_path() && !view.name_or_path.empty()) config.base_model_name_or_path(view.name_or_path);
  if (!config.task_type() && !view.task_type.empty()) config.task_type(view.task_type);
  return config;
}

namespace {

// The tensors save_adapter writes, under PEFT's keys, sharing storage with the model's parameters.
struct AdapterTensors {
  io::NamedTensors tensors;
  bool any_fan_in_fan_out = false;
};

AdapterTensors adapter_tensors(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name) {
  AdapterTensors out;
  std::vector<std::string> adapted;
  for (auto& [name, linear] : find_linears(model)) {
    if (!linear->has_adapter(adapter_name)) continue;
    const Adapter& a = linear->adapter(adapter_name);
    adapted.push_back(name);
    out.any_fan_in_fan_out = out.any_fan_in_fan_out || linear->options.fan_in_fan_out();
    out.tensors.emplace_back(peft_adapter_key(name, "lora_A"), a.lora_A.detach());
    out.tensors.emplace_back(peft_adapter_key(name, "lora_B"), a.lora_B.detach());
    if (a.magnitude.defined()) out.tensors.emplace_back(peft_adapter_key(name, "lora_magnitude_vector"), a.magnitude.detach());
  }
  RANKTUNE_CHECK(!adapted.empty(), "adapter '", adapter_name, "': no layer of the model has it");
  const auto copies = saved_module_tensors(model, adapter_name);
  std::vector<std::string> saved_modules;
  if (config.modules_to_save()) saved_modules = plan_saved_modules(model, config).modules;
  for (const auto& b : saved_biases(model, config, adapted, saved_modules)) {
    out.tensors.emplace_back(peft_parameter_key(b.name), b.parameter.detach());
  }
  for (const auto& [name, t] : copies) out.tensors.emplace_back(peft_parameter_key(name), t.detach());
  return out;
}

}  // namespace

void save_adapter(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                  const std::string& dir) {
  const AdapterTensors saved = adapter_tensors(model, config, adapter_name);
  LoraConfig written = with_model_provenance(config, model);
  written.inference_mode(true);                       // as PEFT's save_pretrained writes it
  written.fan_in_fan_out(saved.any_fan_in_fan_out);   // what PEFT would find in the layers (GPT-2's Conv1D)
  fs::create_directories(dir);
  io::save_safetensors((fs::path(dir) / kWeightsFile).string(), saved.tensors);
  written.save(dir);
}

void restore_adapter_weights(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                             const std::string& dir) {
  const AdapterTensors target = adapter_tensors(model, config, adapter_name);
  const fs::path weights = fs::path(dir) / kWeightsFile;
  const io::SafetensorsFile file = io::SafetensorsFile::open(weights.string());
  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> expected;
  for (const auto& [key, tensor] : target.tensors) {
    expected.insert(key);
    if (!file.contains(key)) missing.push_back(key);
    else if (shape_of(file, key) != tensor.sizes().vec()) {
      mismatched.push_back(c10::str(key, ": file ", torch::IntArrayRef(shape_of(file, key)), " vs model ", tensor.sizes()));
    }
  }
  for (const auto& key : file.names()) {
    if (expected.count(key) == 0) unexpected.push_back(key);
  }
  if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    std::string problems;
    if (!missing.empty()) problems += c10::str("\n  missing (", missing.size(), "): ", first_few(missing));
    if (!mismatched.empty()) problems += c10::str("\n  wrong shape (", mismatched.size(), "): ", first_few(mismatched));
    if (!unexpected.empty()) problems += c10::str("\n  not in adapter '", adapter_name, "' (", unexpected.size(), "): ", first_few(unexpected));
    throw Error("does not hold the weights of adapter '" + adapter_name + "'; nothing was restored:" + problems,
                ErrorContext{weights.string(), "", -1});
  }
  at::NoGradGuard no_grad;
  for (const auto& [key, tensor] : target.tensors) {
    torch::Tensor destination = tensor;  // shares the parameter's storage
    destination.copy_(file.tensor(key));
  }
}

AdapterLoadReport load_adapter(torch::nn::Module& model, const std::string& name_or_path, const std::string& adapter_name,
                               bool is_trainable, const InjectOptions& options) {
  const std::string dir = io::resolve_pretrained(name_or_path);
  RANKTUNE_CHECK_CTX(fs::is_directory(dir), (ErrorContext{dir, "", -1}), "not an adapter directory");
  AdapterLoadReport report;
  report.config = LoraConfig::load(dir);
  report.config.inference_mode(!is_trainable);
  const LoraConfig& config = report.config;
  const fs::path weights = fs::path(dir) / kWeightsFile;
  if (!fs::exists(weights)) {
    // A pickle file is refused by the checkpoint reader with the reason; anything else is missing.
    io::SafetensorsCheckpoint::open((fs::path(dir) / "adapter_model.bin").string());
  }
  const io::SafetensorsFile file = io::SafetensorsFile::open(weights.string());
  if (config.init_lora_weights().rewrites_base_weight()) {
    log_warning(dir + ": the adapter was initialised with " + config.init_lora_weights().to_string() +
                ", which changes the base weights; unless it was saved converted to a plain LoRA, it "
                "only reproduces its outputs on the base it was trained from");
  }

  // ---- plan: check every key and shape before changing anything ----
  const ModelView view = view_of(model, options.output_head());
  const TargetMatcher matcher(config, view.layer_names(), view.output_head);
  const SavedModulesPlan saved = plan_saved_modules(model, config);
  std::set<std::string> consumed;
  std::vector<std::string> missing, mismatched;
  size_t expected = 0;
  struct Planned {
    std::shared_ptr<LinearImpl> linear;
    AdapterOptions options;
    torch::Tensor A, B, m;
  };
  std::vector<Planned> plan;
  auto shape_fits = [&](const std::string& key, const std::vector<int64_t>& shape) {
    consumed.insert(key);
    if (shape_of(file, key) == shape) return true;
    mismatched.push_back(c10::str(key, ": file ", torch::IntArrayRef(shape_of(file, key)), " vs model ",
                                  torch::IntArrayRef(shape)));
    return false;
  };
  auto fetch = [&](const std::string& key, const std::vector<int64_t>& shape) -> torch::Tensor {
    ++expected;
    if (!file.contains(key)) {
      missing.push_back(key);
      return {};
    }
    return shape_fits(key, shape) ? file.tensor(key) : torch::Tensor();
  };
  for (const auto& [name, linear] : view.layers) {
    const bool saved_instead = std::any_of(saved.modules.begin(), saved.modules.end(), [&](const std::string& m) {
      return name == m || starts_with(name, m + ".");
    });
    if (!matcher.is_target(name) || saved_instead) continue;
    RANKTUNE_CHECK(!linear->has_adapter(adapter_name), "adapter '", adapter_name, "' already exists on ", name);
    Planned p{linear, matcher.adapter_options_for(name), {}, {}, {}};
    const int64_t r = p.options.r(), in = linear->options.in_features(), out = linear->options.out_features();
    p.A = fetch(peft_adapter_key(name, "lora_A"), {r, in});
    p.B = fetch(peft_adapter_key(name, "lora_B"), {out, r});
    if (p.options.use_dora()) p.m = fetch(peft_adapter_key(name, "lora_magnitude_vector"), {out});
    report.adapted_modules.push_back(name);
    plan.push_back(std::move(p));
  }
  // Biases: PEFT's key, else ranktune's older one (warned), else absent (allowed for lora_only).
  std::vector<std::pair<torch::Tensor, std::string>> bias_loads;  // parameter, key
  std::vector<std::string> legacy_keys, absent_lora_only;
  for (const auto& b : saved_biases(model, config, report.adapted_modules, saved.modules)) {
    const std::string key = peft_parameter_key(b.name);
    const std::string legacy = b.legacy_name.empty() ? "" : peft_parameter_key(b.legacy_name);
    const std::vector<int64_t> shape = b.parameter.sizes().vec();
    if (!file.contains(key) && !legacy.empty() && file.contains(legacy)) {
      ++expected;
      legacy_keys.push_back(legacy);
      if (shape_fits(legacy, shape)) bias_loads.emplace_back(b.parameter, legacy);
    } else if (!file.contains(key) && config.bias() == LoraBias::lora_only) {
      absent_lora_only.push_back(b.name);
    } else if (fetch(key, shape).defined()) {
      bias_loads.emplace_back(b.parameter, key);
    }
  }
  // modules_to_save copies: a copy shared by a tied pair may be stored under either name.
  for (const SavedTensorLayout& t : saved.tensors) {
    ++expected;
    bool found = false;
    for (const auto& name : t.names) {
      const std::string key = peft_parameter_key(name);
      if (!file.contains(key)) continue;
      found = true;
      shape_fits(key, t.shape);
    }
    if (!found) missing.push_back(peft_parameter_key(t.names[0]));
  }
  std::vector<std::string> unexpected;
  for (const auto& key : file.names()) {
    if (consumed.count(key) == 0) unexpected.push_back(key);
  }
  if (plan.empty() || !missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    const bool base_looks_wrong = plan.empty() || missing.size() * 2 > expected;
    std::string problems;
    if (base_looks_wrong) {
      problems += c10::str("\n  ", plan.empty() ? "the config's target_modules select no layer of this model"
                                                : c10::str(missing.size(), " of the ", expected, " tensors this model "
                                                           "expects are not in the file"),
                           ": this looks like the wrong base model",
                           config.base_model_name_or_path() ? " (the adapter was made for " +
                                                                  *config.base_model_name_or_path() + ")"
                                                            : std::string());
    }
    if (!missing.empty()) problems += c10::str("\n  missing (", missing.size(), "): ", first_few(missing));
    if (!mismatched.empty()) problems += c10::str("\n  wrong shape (", mismatched.size(), "): ", first_few(mismatched));
    if (!unexpected.empty()) {
      problems += c10::str("\n  not used by any layer (", unexpected.size(), "): ", first_few(unexpected));
    }
    if (!base_looks_wrong) problems += "\n  (hint: do target_modules, rank_pattern and modules_to_save match the file?)";
    throw Error("the adapter does not fit this model; nothing was loaded:" + problems,
                ErrorContext{weights.string(), "", -1});
  }
  if (!legacy_keys.empty()) {
    log_warning(c10::str(weights.string(), ": read ", legacy_keys.size(), " bias(es) under ranktune's older name (",
                         first_few(legacy_keys, 2), "); PEFT names them <layer>.base_layer.bias and ignores these — "
                         "save the adapter again to rename them"));
  }
  if (!absent_lora_only.empty()) {
    log_warning(c10::str(weights.string(), ": bias=\"lora_only\" but the file has no bias for ", absent_lora_only.size(),
                         " adapted layer(s) (PEFT 0.12 does not save them); their base biases are kept"));
  }

  // ---- apply ----
  size_t done = 0;
  bool copies_added = false;
  try {
    for (; done < plan.size(); ++done) {
      Planned& p = plan[done];
      p.linear->add_adapter_from_weights(adapter_name, p.options, p.A, p.B, p.m);
    }
    add_saved_modules(model, config, adapter_name);
    copies_added = true;
  } catch (...) {
    for (size_t i = 0; i < done; ++i) plan[i].linear->delete_adapter(adapter_name);
    if (copies_added) delete_saved_modules(model, adapter_name);
    throw;
  }
  {
    at::NoGradGuard no_grad;
    for (auto& [parameter, key] : bias_loads) {
      parameter.copy_(file.tensor(key));
      report.loaded_parameters.push_back(key.substr(std::string("base_model.model.").size()));
    }
    for (auto& [name, copy] : saved_module_tensors(model, adapter_name)) {
      const std::string key = peft_parameter_key(name);
      if (!file.contains(key)) continue;
      copy.copy_(file.tensor(key));
      report.loaded_parameters.push_back(name);
    }
  }
  const std::vector<std::string> active = active_adapters(model);
  set_active_adapters(model, active.size() > 1 && has_saved_modules(model) ? std::vector<std::string>{adapter_name} : active);
  mark_trainable(model, config, active_adapters(model));
  return report;
}

}  // namespace ranktune::peft
