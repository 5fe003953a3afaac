// A model's config.json (ModelConfig::from_json): architecture, sizes, rope scaling, dtypes.
#include "ranktune/core/error.h"
#include "ranktune/model/config.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto config = ranktune::model::ModelConfig::from_json(text, "config.json");
    (void)config;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
