#include "ranktune/model/kv_cache.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

namespace ranktune::model {

KVCache::KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t capacity, int64_t key_dim,
                 int64_t value_dim, const torch::TensorOptions& options)
    : capacity_(capacity) {
  RANKTUNE_CHECK(num_layers > 0 && batch > 0 && capacity > 0, "KVCache needs positive layers, batch and capacity");
  for (int64_t i = 0; i < num_layers; ++i) {
    keys_.push_back(at::empty({batch, num_kv_heads, capacity, key_dim}, options));
    values_.push_back(at::empty({batch, num_kv_heads, capacity, value_dim}, options));
  }
}

int64_t KVCache::bytes_per_token() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    bytes += (keys_[i].size(1) * keys_[i].size(3) + values_[i].size(1) * values_[i].size(3)) * keys_[i].element_size();
  }
  return bytes;
}

std::pair<torch::Tensor, torch::Tensor> KVCache::update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t n = k.size(2);
  RANKTUNE_CHECK(length_ + n <= capacity_, "KV cache is full: ", length_, " cached + ", n, " new tokens exceed its capacity of ",
                 capacity_);
  keys_[layer].narrow(2, length_, n).copy_(k);
  values_[layer].narrow(2, length_, n).copy_(v);
  return {keys_[layer].narrow(2, 0, length_ + n), values_[layer].narrow(2, 0, length_ + n)};
}

void KVCache::keep_rows(const torch::Tensor& rows) {
  for (size_t i = 0; i < keys_.size(); ++i) {
    keys_[i] = keys_[i].index_select(0, rows.to(keys_[i].device()));
    values_[i] = values_[i].index_select(0, rows.to(values_[i].device()));
  }
}

void KVCache::advance(int64_t n) {
  TORCH_INTERNAL_ASSERT(length_ + n <= capacity_);
  length_ += n;
}

}  // namespace ranktune::model
