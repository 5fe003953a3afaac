// safetensors file: the 8-byte header length, the JSON header and the byte ranges it names
// (SafetensorsFile::open validates all of it before any tensor byte is read). Only
// ranktune::Error may escape; anything else (another exception, a sanitizer report) is a finding.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = ranktune::fuzz::write_file("model.safetensors", data, size);
  try {
    auto file = ranktune::io::SafetensorsFile::open(path);
    size_t bytes = 0;
    for (const auto& name : file.names()) {
      const auto& info = file.info(name);
      bytes += info.end - info.begin + info.dtype.size() + info.shape.size();
    }
    for (const auto& [key, value] : file.metadata()) bytes += key.size() + value.size();
    if (bytes == SIZE_MAX) return 1;  // keeps the loop from being optimised away
  } catch (const ranktune::Error&) {
  }
  return 0;
}
