// A YAML training recipe with command-line overrides (RunConfig::parse). The input is the YAML,
// then optionally a NUL byte and one `key.path=value` override per line. A recipe that parses is
// also turned into its adapter config and written back as YAML, as the trainer does.
#include "ranktune/core/error.h"
#include "ranktune/train/config.h"

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string yaml = input.substr(0, input.find('\0'));
  std::vector<std::string> overrides;
  if (yaml.size() < input.size()) {
    std::istringstream lines(input.substr(yaml.size() + 1));
    for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  }
  try {
    auto config = ranktune::train::RunConfig::parse(yaml, "/fuzz/recipe.yaml", overrides);
    std::string written = config.to_yaml();
    if (written.empty()) return 1;
    auto adapter = config.adapter_config();
    (void)adapter;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
