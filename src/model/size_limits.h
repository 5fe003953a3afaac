#pragma once
// Limits checked before anything is allocated or indexed. The sizes a config.json gives: against
// the shapes in the checkpoint's headers (nothing is read or allocated for that) and against this
// machine's memory; a config that disagrees with its weights would otherwise fail only after every
// parameter had been allocated, or in the allocation itself naming neither the file nor the key.
// Token ids: against the vocabulary, where they enter a model (forward, generate), instead of
// LibTorch's "index out of range in self".

#include "ranktune/core/quantized_weight.h"
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

// The parameters that stay in the compute dtype whatever `model.quantize` says: the embeddings
// (GPT-2's positions too) and an untied output head.
double dense_parameter_count(const ModelConfig& config);

// The bytes the parameters take: the dense ones in `dtype`, the rest (projections, experts; norms
// and biases counted with them, a negligible share) as `quantize` stores them.
double parameter_bytes(const ModelConfig& config, torch::Dtype dtype, QuantFormat quantize = QuantFormat::none,
                       bool double_quant = false);

// Throws ranktune::Error (naming `config_file` when known, and the sizes) when the parameters, as
// parameter_bytes counts them, would need more than this machine's physical memory.
void check_parameters_fit_memory(const ModelConfig& config, torch::Dtype dtype, QuantFormat quantize,
                                 bool double_quant, const std::string& config_file = "");

// Every id must be in [0, vocab_size). Throws ranktune::Error naming the first id outside, where
// it is, and the vocabulary size.
void check_token_ids(const torch::Tensor& input_ids, int64_t vocab_size);
void check_token_ids(const std::vector<std::vector<int64_t>>& prompts, int64_t vocab_size);

}  // namespace ranktune::model
