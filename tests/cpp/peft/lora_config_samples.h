#pragma once
// A LoraConfig with every field away from its default (and valid), for round trips through JSON
// and recipes. The schema tests fail if a field of the table is left at its default here.

#include "ranktune/peft/lora_config.h"

namespace ranktune::testing {

inline peft::LoraConfig lora_config_with_every_field() {
  return peft::LoraConfig()
      .r(12)
      .target_modules({"q_proj", "v_proj", "down_proj"})
      .exclude_modules(".*layers\\.0\\..*")
      .lora_alpha(24.5)
      .lora_dropout(0.1)
      .fan_in_fan_out(true)
      .bias(peft::LoraBias::lora_only)
      .use_rslora(true)
      .modules_to_save(std::vector<std::string>{"lm_head"})
      .init_lora_weights(peft::LoraInit::parse("pissa_niter_4"))
      .layers_to_transform(std::vector<int64_t>{0, 2})
      .layers_pattern(std::vector<std::string>{"layers"})
      .rank_pattern({{"q_proj", 4}, {"layers.1.v_proj", 2}})
      .alpha_pattern({{"v_proj", 3.0}})
      .use_dora(true)
      .ensure_weight_tying(true)
      .task_type(std::string("CAUSAL_LM"))
      .inference_mode(true)
      .base_model_name_or_path(std::string("models/tiny"))
      .revision(std::string("main"));
}

}  // namespace ranktune::testing
