// model.safetensors.index.json: the weight map of a sharded checkpoint. The input is the index;
// beside it lies one valid shard (model-00001-of-00001.safetensors, tensor "w", F32 [2]) so that
// the index can name real and missing files and tensors.
#include "fuzz_input.h"
#include "ranktune/core/error.h"
#include "ranktune/io/safetensors.h"

namespace {
void write_shard() {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  bytes += std::string(8, '\0');
  ranktune::fuzz::write_file("model-00001-of-00001.safetensors", bytes);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool shard_written = (write_shard(), true);
  (void)shard_written;
  std::string path = ranktune::fuzz::write_file("model.safetensors.index.json", data, size);
  try {
    auto checkpoint = ranktune::io::SafetensorsCheckpoint::open(path);
    size_t count = checkpoint.files().size() + checkpoint.metadata().size();
    for (const auto& name : checkpoint.names()) count += checkpoint.info(name).shape.size();
    if (count == SIZE_MAX) return 1;
  } catch (const ranktune::Error&) {
  }
  return 0;
}
