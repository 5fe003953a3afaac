#include "commands.h"

#include "ranktune/core/error.h"
#include "ranktune/core/quantized_weight.h"
#include "ranktune/model/causal_lm.h"
#include "ranktune/peft/peft_model.h"

namespace ranktune::cli {

void add_quantize_flags(CLI::App& cmd, QuantizeFlags& flags) {
  cmd.add_option("--quantize", flags.quantize,
                 "store the frozen projection weights quantized: int8 (per output channel) or nf4 (blocks of 64)")
      ->check(CLI::IsMember({"none", "int8", "nf4"}));
  cmd.add_flag("--double-quant", flags.double_quant, "with --quantize nf4: quantize the block scales to 8 bits too");
}

LoadedModel load_model(const std::string& model_dir, const std::string& adapter_dir, const QuantizeFlags& quantize) {
  LoadedModel loaded;
  const QuantFormat format = parse_quant_format(quantize.quantize);
  RANKTUNE_CHECK(!quantize.double_quant || format == QuantFormat::nf4, "--double-quant needs --quantize nf4");
  loaded.model = model::load_causal_lm(model_dir,
                                       model::LoadOptions().quantize(format).double_quant(quantize.double_quant));
  if (!adapter_dir.empty()) {
    loaded.adapters = std::make_shared<peft::PeftModel>(peft::PeftModel::from_pretrained(
        loaded.model, adapter_dir, "default", /*is_trainable=*/false));
  }
  return loaded;
}

}  // namespace ranktune::cli
