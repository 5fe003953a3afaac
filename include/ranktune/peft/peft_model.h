#pragma once
// PeftModel: a model with its adapters and their configs — PEFT's PeftModel/LoraModel. It keeps
// the configs only: which adapters are active, enabled or merged is read from the layers, which
// hold the adapters (the model's peft::Linear modules and modules_to_save copies).
//
//   auto peft = ranktune::peft::PeftModel(model, LoraConfig().r(16).target_modules("all-linear"));
//   std::cout << peft.trainable_parameters().summary() << "\n";

#include "ranktune/peft/adapter_io.h"
#include "ranktune/peft/inject.h"
#include "ranktune/peft/lora_config.h"
#include "ranktune/peft/weighted_adapter.h"

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ranktune::peft {

class PeftModel {
 public:
  // Attaches `config` as `adapter_name` and makes it the active, trainable adapter
  // (PEFT's get_peft_model). An unset base_model_name_or_path or task_type is taken from the
  // model (AdaptableModel), as PEFT records them.
  PeftModel(std::shared_ptr<torch::nn::Module> model, const LoraConfig& config,
            const std::string& adapter_name = "default", InjectOptions options = {});

  // Attaches an adapter saved by PEFT or by ranktune (PEFT's PeftModel.from_pretrained). Frozen
  // unless `is_trainable`.
  static PeftModel from_pretrained(std::shared_ptr<torch::nn::Module> model, const std::string& dir,
                                   const std::string& adapter_name = "default", bool is_trainable = false,
                                   InjectOptions options = {});

  torch::nn::Module& model() { return *model_; }
  const std::shared_ptr<torch::nn::Module>& model_ptr() const { return model_; }

  // Attaches another adapter. As in PEFT it is not activated: call set_adapter().
  InjectReport add_adapter(const std::string& adapter_name, const LoraConfig& config);
  // Attaches another saved adapter; as add_adapter, it is not activated.
  AdapterLoadReport load_adapter(const std::string& dir, const std::string& adapter_name, bool is_trainable = false);
  // Writes each adapter (default: all) in PEFT's layout: "default" in `dir`, any other name in
  // `dir`/<name>/.
  void save_pretrained(const std::string& dir, const std::vector<std::string>& adapter_names = {}) const;

  // Makes one adapter (or several) active and trainable; the others stay attached, unused.
  void set_adapter(const std::string& adapter_name);
  void set_adapter(const std::vector<std::string>& adapter_names);
  std::vector<std::string> active_adapters() const;
  void delete_adapter(const std::string& adapter_name);

  std::vector<std::string> adapter_names() const;
  const LoraConfig& config(const std::string& adapter_name) const;

  void enable_adapters();
  void disable_adapters();
  bool adapters_enabled() const;

  void merge_adapter(bool safe = false, const std::vector<std::string>& adapter_names = {});
  void unmerge_adapter();
  // Merges the active adapters into the base weights, removes all adapters and returns the model.
  // This PeftModel holds no adapters afterwards.
  std::shared_ptr<torch::nn::Module> merge_and_unload(bool safe = false);
  // Removes all adapters without merging (the active adapter's modules_to_save copies stay, as
  // the modules' parameters, as in PEFT) and returns the model.
  std::shared_ptr<torch::nn::Module> unload();

  // Adds `new_name` combined from `adapters` (see weighted_adapter.h). Its config is the first
  // source's with r = lora_alpha = the new rank and target_modules the union of the sources';
  // its modules_to_save copies start from the modules' own parameters (as PEFT; two sources with
  // copies of the same module are refused). Not activated.
  void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                            const std::string& new_name, const WeightedAdapterOptions& options = {});

  ParameterCounts trainable_parameters() const { return count_parameters(*model_); }

 private:
  PeftModel(std::shared_ptr<torch::nn::Module> model, InjectOptions options);
  // Makes `active` the active adapters again (after attaching one) and marks what trains.
  void restore_active(const std::vector<std::string>& active);

  std::shared_ptr<torch::nn::Module> model_;
  InjectOptions options_;
  std::map<std::string, LoraConfig> configs_;
};

// RAII: adapters disabled for the guard's lifetime (PEFT's `with model.disable_adapter():`).
class DisabledAdapters {
 public:
  explicit DisabledAdapters(PeftModel& model) : model_(model), was_enabled_(model.adapters_enabled()) {
    model_.disable_adapters();
  }
  ~DisabledAdapters() {
    if (was_enabled_) model_.enable_adapters();
  }
  DisabledAdapters(const DisabledAdapters&) = delete;
  DisabledAdapters& operator=(const DisabledAdapters&) = delete;

 private:
  PeftModel& model_;
  bool was_enabled_;
};

}  // namespace ranktune::peft
