#include "ranktune/peft/adapter_io.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <set>

namespace ranktune::peft {
namespace {

namespace fs = std::filesystem;

const char* const kWeightsFile = "adapter_model.safetensors";

// The full parameters (name -> tensor) that the adapter file carries besides A, B and m:
// modules_to_save entirely, and biases per config.bias.
std::vector<std::pair<std::string, torch::Tensor>> extra_parameters(torch::nn::Module& model, const LoraConfig& config,
                                                                    const std::vector<std::string>& adapted,
                                                                    const InjectOptions& options) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    if (t.defined() && name.find("lora_") == std::string::npos && seen.insert(name).second) out.emplace_back(name, t);
  };
  if (config.modules_to_save()) {
    const TargetMatcher matcher(config, {}, options.output_head());
    for (const auto& item : model.named_modules("", /*include_self=*/false)) {
      if (!matcher.is_module_to_save(item.key())) continue;
      for (const auto& p : item.value()->named_parameters()) add(item.key() + "." + p.key(), p.value());
    }
  }
  for (const auto& p : model.named_parameters()) {
    if (!ends_with(p.key(), ".bias") && p.key() != "bias") continue;
    const std::string owner = p.key().size() > 5 ? p.key().substr(0, p.key().size() - 5) : "";
    const bool adapted_owner = std::find(adapted.begin(), adapted.end(), owner) != adapted.end();
    if (config.bias() == LoraBias::all || (config.bias() == LoraBias::lora_only && adapted_owner)) add(p.key(), p.value());
  }
  return out;
}

}  // namespace

std::string peft_adapter_key(const std::string& module, const std::string& kind) {
  if (kind == "lora_magnitude_vector") return "base_model.model." + module + ".lora_magnitude_vector";
  return "base_model.model." + module + "." + kind + ".weight";
}

std::string peft_parameter_key(const std::string& parameter) { return "base_model.model." + parameter; }

void save_adapter(torch::nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                  const std::string& dir) {
  io::NamedTensors tensors;
  std::vector<std::string> adapted;
  for (auto& [name, linear] : find_linears(model)) {
    if (!linear->has_adapter(adapter_name)) continue;
    const Adapter& a = linear->adapter(adapter_name);
    adapted.push_back(name);
    tensors.emplace_back(peft_adapter_key(name, "lora_A"), a.lora_A.detach());
    tensors.emplace_back(peft_adapter_key(name, "lora_B"), a.lora_B.detach());
    if (a.magnitude.defined()) tensors.emplace_back(peft_adapter_key(name, "lora_magnitude_vector"), a.magnitude.detach());
  }
  RANKTUNE_CHECK(!adapted.empty(), "cannot save adapter '", adapter_name, "': no layer of the model has it");
  for (auto& [name, t] : extra_parameters(model, config, adapted, InjectOptions())) {
    tensors.emplace_back(peft_parameter_key(name), t.detach());
  }
  LoraConfig written = config;
  written.inference_mode(true);  // as PEFT's save_pretrained writes it
  fs::create_directories(dir);
  io::save_safetensors((fs::path(dir) / kWeightsFile).string(), tensors);
  written.save(dir);
}

AdapterLoadReport load_adapter(torch::nn::Module& model, const std::string& dir, const std::string& adapter_name,
                               bool is_trainable, const InjectOptions& options) {
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
  const auto linears = find_linears(model);
  std::vector<std::string> linear_names;
  for (const auto& item : linears) linear_names.push_back(item.first);
  const TargetMatcher matcher(config, linear_names, options.output_head());
  std::set<std::string> consumed;
  std::vector<std::string> missing, mismatched;
  struct Planned {
    std::shared_ptr<LinearImpl> linear;
    AdapterOptions options;
    torch::Tensor A, B, m;
  };
  std::vector<Planned> plan;
  auto fetch = [&](const std::string& key, std::vector<int64_t> shape) -> torch::Tensor {
    if (!file.contains(key)) {
      missing.push_back(key);
      return {};
    }
    consumed.insert(key);
    const torch::Tensor t = file.tensor(key);
    if (t.sizes() != torch::IntArrayRef(shape)) {
      mismatched.push_back(c10::str(key, ": file ", t.sizes(), " vs expected ", torch::IntArrayRef(shape)));
      return {};
    }
    return t;
  };
  for (const auto& [name, linear] : linears) {
    if (!matcher.is_target(name)) continue;
    RANKTUNE_CHECK(!linear->has_adapter(adapter_name), "adapter '", adapter_name, "' already exists on ", name);
    Planned p{linear, matcher.adapter_options_for(name), {}, {}, {}};
    const int64_t r = p.options.r(), in = linear->options.in_features(), out = linear->options.out_features();
    p.A = fetch(peft_adapter_key(name, "lora_A"), {r, in});
    p.B = fetch(peft_adapter_key(name, "lora_B"), {out, r});
    if (p.options.use_dora()) p.m = fetch(peft_adapter_key(name, "lora_magnitude_vector"), {out});
    report.adapted_modules.push_back(name);
    plan.push_back(std::move(p));
  }
  const auto extras = extra_parameters(model, config, report.adapted_modules, options);
  for (const auto& [name, t] : extras) fetch(peft_parameter_key(name), t.sizes().vec());
  std::vector<std::string> unexpected;
  for (const auto& key : file.names()) {
    if (consumed.count(key) == 0) unexpected.push_back(key);
  }
  if (plan.empty() || !missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    std::string problems;
    if (plan.empty()) problems += "\n  the config's target_modules select no layer of this model (hint: wrong base model?)";
    if (!missing.empty()) problems += "\n  missing (" + std::to_string(missing.size()) + "): " + join(missing);
    if (!mismatched.empty()) problems += "\n  wrong shape (" + std::to_string(mismatched.size()) + "): " + join(mismatched);
    if (!unexpected.empty()) {
      problems += "\n  not used by any layer (" + std::to_string(unexpected.size()) + "): " + join(unexpected) +
                  " (hint: wrong base model, or target_modules do not match the file?)";
    }
    throw Error("the adapter does not fit this model:" + problems, ErrorContext{weights.string(), "", -1});
  }

  // ---- apply ----
  size_t done = 0;
  try {
    for (; done < plan.size(); ++done) {
      Planned& p = plan[done];
      p.linear->add_adapter_from_weights(adapter_name, p.options, p.A, p.B, p.m);
    }
  } catch (...) {
    for (size_t i = 0; i < done; ++i) plan[i].linear->delete_adapter(adapter_name);
    throw;
  }
  {
    at::NoGradGuard no_grad;
    for (const auto& [name, t] : extras) {
      torch::Tensor target = t;
      target.copy_(file.tensor(peft_parameter_key(name)));
      report.loaded_parameters.push_back(name);
    }
  }
  std::vector<std::string> active;
  for (const auto& [name, linear] : linears) {
    for (const auto& a : linear->active_adapters()) {
      if (std::find(active.begin(), active.end(), a) == active.end()) active.push_back(a);
    }
  }
  mark_trainable(model, config, active, options);
  return report;
}

}  // namespace ranktune::peft
