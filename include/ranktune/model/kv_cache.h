#pragma once
// A preallocated key/value cache for incremental decoding: one [batch, kv_heads, capacity, head_dim]
// buffer per layer for keys and for values, filled in place, so a decoding step allocates no
// cache memory. Keys and values may have different widths (DeepSeek's MLA caches its compressed
// latent as the "keys" and the shared rotary key as the "values", with kv_heads = 1).

#include <torch/types.h>

#include <utility>
#include <vector>

namespace ranktune::model {

class KVCache {
 public:
  KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t capacity, int64_t head_dim,
          const torch::TensorOptions& options)
      : KVCache(num_layers, batch, num_kv_heads, capacity, head_dim, head_dim, options) {}
  KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t capacity, int64_t key_dim,
          int64_t value_dim, const torch::TensorOptions& options);

  // Stores k and v ([batch, kv_heads, n, head_dim]) for `layer` at positions [length(), length()+n)
  // and returns views of everything cached for that layer, [0, length()+n). Throws when full.
  std::pair<torch::Tensor, torch::Tensor> update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  // Tokens cached before the current forward pass; the model advances it once all layers ran.
  int64_t length() const { return length_; }
  void advance(int64_t n);
  int64_t capacity() const { return capacity_; }
  int64_t batch_size() const { return keys_.empty() ? 0 : keys_[0].size(0); }
  void reset() { length_ = 0; }
  // Keeps only the sequences `rows` (ascending indices into the batch), in that order: generation
  // drops the rows that finished so the next steps compute only the live ones.
  void keep_rows(const torch::Tensor& rows);
  // Bytes the cache holds per token (all layers, one sequence).
  int64_t bytes_per_token() const;

 private:
  std::vector<torch::Tensor> keys_;
  std::vector<torch::Tensor> values_;
  int64_t capacity_;
  int64_t length_ = 0;
};

}  // namespace ranktune::model
