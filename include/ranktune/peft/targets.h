#pragma once
// Which modules a LoraConfig adapts, and with which rank and alpha — PEFT's
// check_target_module_exists and rank_pattern/alpha_pattern lookup, as a reusable object.

#include "ranktune/peft/linear.h"
#include "ranktune/peft/lora_config.h"

#include <memory>
#include <string>
#include <vector>

namespace ranktune::peft {

class TargetMatcher {
 public:
  // `linear_names`: qualified names of every adaptable linear layer in the model, used to expand
  // target_modules="all-linear" (by their last name component, minus the output head, as PEFT does).
  // Throws ranktune::Error naming the field when the config is invalid.
  TargetMatcher(const LoraConfig& config, const std::vector<std::string>& linear_names = {},
                const std::string& output_head = "lm_head");
  ~TargetMatcher();
  TargetMatcher(TargetMatcher&&) noexcept;
  TargetMatcher& operator=(TargetMatcher&&) noexcept;

  // The module is selected by exclude_modules.
  bool is_excluded(const std::string& name) const;
  // The module is selected by target_modules (and layers_to_transform) and not excluded.
  bool is_target(const std::string& name) const;
  // The module is one of modules_to_save: its name ends with an entry (PEFT's plain suffix match).
  bool is_module_to_save(const std::string& name) const;
  // The adapter settings for this module: r and alpha after rank_pattern/alpha_pattern, where a
  // key matches by the regex (.*\.)?(key)$ and the first matching key wins.
  AdapterOptions adapter_options_for(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when `name` equals `entry` or ends in "." + entry.
bool name_matches_suffix(const std::string& name, const std::string& entry);

}  // namespace ranktune::peft
