#include "commands.h"

#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"

namespace ranktune::cli {

LoadedModel load_model(const std::string& model_dir, const std::string& adapter_dir) {
  LoadedModel loaded;
  loaded.model = model::load_causal_lm(model_dir);
  if (!adapter_dir.empty()) {
    loaded.adapters = std::make_shared<peft::PeftModel>(peft::PeftModel::from_pretrained(
        loaded.model, adapter_dir, "default", /*is_trainable=*/false));
  }
  return loaded;
}

}  // namespace ranktune::cli
