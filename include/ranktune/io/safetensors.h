#pragma once
// safetensors: Hugging Face's tensor file format (an 8-byte little-endian header length, a JSON
// header, then raw little-endian tensor bytes). Files are read by mmap and validated before any
// byte is trusted; writes are atomic. A checkpoint may be one file or shards listed in
// `model.safetensors.index.json`. Pickle checkpoints (`pytorch_model.bin`) are refused.
//
//   auto ckpt = ranktune::io::SafetensorsCheckpoint::open("path/to/model_dir");
//   torch::Tensor w = ckpt.tensor("model.embed_tokens.weight");

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::io {

// One tensor's entry in a header.
struct TensorInfo {
  std::string name;
  std::string dtype;            // as stored: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;           // byte offsets into the data section
  uint64_t end = 0;
};

// The torch dtype for a safetensors dtype name (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL),
// and back. Throws ranktune::Error for other names.
torch::Dtype dtype_from_safetensors(const std::string& name);
std::string dtype_to_safetensors(torch::Dtype dtype);

// One validated, memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file, valid JSON, known dtypes,
  // non-negative shapes, offsets in bounds and not overlapping, byte size = elements × dtype size,
  // string-to-string `__metadata__`. Throws ranktune::Error naming the file (and the tensor) and
  // the problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws if absent, naming the file
  const std::map<std::string, std::string>& metadata() const;

  // A tensor over the mapped bytes, no copy: it keeps the mapping alive. The mapping is private
  // (copy-on-write), so writing to the tensor never changes the file. Throws if absent.
  torch::Tensor tensor(const std::string& name) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// A model's weights: one file, or the shards of an index.
class SafetensorsCheckpoint {
 public:
  // `path` may be a directory (holding model.safetensors or model.safetensors.index.json), a
  // .safetensors file or an index .json file. A directory with only pickle weights
  // (pytorch_model.bin, *.pt, *.pth), or such a file, is refused with an error explaining why
  // (unpickling can run arbitrary code) and how to convert. Every tensor the index lists must
  // exist in its shard.
  static SafetensorsCheckpoint open(const std::string& path);

  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;  // throws naming the checkpoint if absent
  // Metadata of the index (or of the single file).
  const std::map<std::string, std::string>& metadata() const;
  // The files this checkpoint reads.
  std::vector<std::string> files() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes tensors (any strides; written contiguous, little-endian) with `metadata` (default
// {"format": "pt"}, which Hugging Face loaders expect) to `path` atomically: a temporary file
// in the same directory, then rename. Names must be unique and non-empty; dtypes must be one of
// the ten above. On error nothing is left at `path` or beside it.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace ranktune::io
