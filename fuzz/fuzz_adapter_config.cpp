// adapter_config.json (LoraConfig::from_json): PEFT's LoRA/DoRA fields, target-module regexes,
// rank and alpha patterns.
#include "ranktune/core/error.h"
#include "ranktune/peft/lora_config.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto config = ranktune::peft::LoraConfig::from_json(text, "adapter_config.json");
    (void)config;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
