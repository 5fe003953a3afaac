#pragma once
// Limits checked before anything is allocated or indexed. The sizes a config.json gives: against
// the shapes in the checkpoint's headers (nothing is read or allocated for that) and against this
// machine's memory; a config that disagrees with its weights would otherwise fail only after every
// parameter had been allocated, or in the allocation itself naming neither the file nor the key.
// Token ids: against the vocabulary, where they enter a model (forward, generate), instead of
// LibTorch's "index out of range in self".

#include "ranktune/io/safetensors.h"
#include "ranktune/model/config.h"

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ranktune::model {

// Each size that a checkpoint tensor fixes (vocabulary, hidden and intermediate sizes, the
// attention widths, the number of layers, GPT-2's positions) must equal that tensor's dimension.
// Throws ranktune::Error naming `config_file`, the key, its value, the tensor and its shape.
void check_sizes_against_checkpoint(const ModelConfig& config, const std::string& config_file,
                                    const io::SafetensorsCheckpoint& checkpoint);

// The number of parameters `config` describes, in floating point so that no size overflows
// (biases counted whether present or not: an upper estimate).
double parameter_count(const ModelConfig& config);

// Throws ranktune::Error (naming `config_file` when known, and the sizes) when the parameters in
// `dtype` would need more than this machine's physical memory.
void check_parameters_fit_memory(const ModelConfig& config, torch::Dtype dtype, const std::string& config_file = "");

// Every id must be in [0, vocab_size). Throws ranktune::Error naming the first id outside, where
// it is, and the vocabulary size.
void check_token_ids(const torch::Tensor& input_ids, int64_t vocab_size);
void check_token_ids(const std::vector<std::vector<int64_t>>& prompts, int64_t vocab_size);

}  // namespace ranktune::model
