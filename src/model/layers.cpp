#include "ranktune/model/layers.h"

#include "ranktune/core/error.h"
#include "ranktune/model/blocked_attention.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ranktune::model {

// ---- RMSNorm -------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t size, double eps, torch::Dtype dtype) : size_(size), eps_(eps), dtype_(dtype) {
  RMSNormImpl::reset();
}

void RMSNormImpl::reset() { weight = register_parameter("weight", at::ones({size_}, at::TensorOptions().dtype(dtype_))); }

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // Conversions only where the dtype changes: each call costs a little, 60 norms per token.
  const bool fp32 = x.scalar_type() == torch::kFloat32;
  const torch::Tensor h = fp32 ? x : x.to(torch::kFloat32);
  const torch::Tensor normed = h * at::rsqrt(h.square().mean(-1, /*keepdim=*/true) + eps_);
  return weight * (fp32 ? normed : normed.to(x.scalar_type()));
}

// ---- rotary embeddings ---------------------------------------------------------------------------

namespace {

// 1 / base^(2i / dim) in fp32, as transformers computes it.
torch::Tensor default_inv_freq(double base, int64_t dim) {
  const torch::Tensor exponents = at::arange(0, dim, 2, at::TensorOptions().dtype(torch::kLong)).to(torch::kFloat32) / dim;
  return 1.0 / at::pow(base, exponents);
}

// Llama 3.1's frequency-dependent scaling: long wavelengths are divided by `factor`, short ones
// kept, and the band in between interpolated.
torch::Tensor llama3_inv_freq(const torch::Tensor& inv_freq, const RopeScaling& s) {
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  torch::Tensor out = inv_freq.clone();
  auto acc = out.accessor<float, 1>();
  for (int64_t i = 0; i < out.size(0); ++i) {
    const double f = acc[i];
    const double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      acc[i] = static_cast<float>(f / s.factor);
    } else {
      const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      acc[i] = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
    }
  }
  return out;
}

// yarn (Peng et al. 2023) as DeepSeek implements it: dimensions that rotate more than beta_fast
// times over the original context keep their frequency, those rotating fewer than beta_slow times
// are interpolated (divided by factor), with a linear ramp between.
torch::Tensor yarn_inv_freq(double base, int64_t dim, const RopeScaling& s) {
  const torch::Tensor powers =
      at::pow(base, at::arange(0, dim, 2, at::TensorOptions().dtype(torch::kLong)).to(torch::kFloat32) / dim);
  const torch::Tensor extrapolated = 1.0 / powers;
  const torch::Tensor interpolated = 1.0 / (s.factor * powers);
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(s.original_max_position_embeddings / (rotations * 2 * M_PI))) / (2 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(s.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(s.beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // as DeepSeek: no division by zero
  const torch::Tensor ramp =
      ((at::arange(dim / 2, at::TensorOptions().dtype(torch::kFloat32)) - low) / (high - low)).clamp(0, 1);
  const torch::Tensor keep = 1.0 - ramp;  // 1: extrapolate (keep the frequency)
  return interpolated * (1 - keep) + extrapolated * keep;
}

}  // namespace

double yarn_mscale(double factor, double mscale) { return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

RotaryEmbedding::RotaryEmbedding(const ModelConfig& config, int64_t dim)
    : config_(config), dim_(dim > 0 ? dim : config.head_dim) {
  const RopeScaling& s = config.rope_scaling;
  inv_freq_ = default_inv_freq(config.rope_theta, dim_);
  if (s.type == RopeScaling::Type::llama3) inv_freq_ = llama3_inv_freq(inv_freq_, s);
  if (s.type == RopeScaling::Type::yarn) {
    inv_freq_ = yarn_inv_freq(config.rope_theta, dim_, s);
    cos_sin_scale_ = yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim);
  }
}

torch::Tensor RotaryEmbedding::inv_freq_for(int64_t seq_len) const {
  const RopeScaling& s = config_.rope_scaling;
  if (s.type != RopeScaling::Type::dynamic || seq_len <= config_.max_position_embeddings) return inv_freq_;
  // Dynamic NTK: stretch the base once the sequence outgrows the trained context.
  const double dim = static_cast<double>(dim_);
  const double base = config_.rope_theta *
                      std::pow(s.factor * seq_len / config_.max_position_embeddings - (s.factor - 1), dim / (dim - 2));
  return default_inv_freq(base, dim_);
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::cos_sin(const torch::Tensor& position_ids, torch::Dtype dtype) const {
  torch::Tensor positions = position_ids.to(torch::kFloat32);
  if (config_.rope_scaling.type == RopeScaling::Type::linear) positions = positions / config_.rope_scaling.factor;
  const torch::Tensor inv_freq =
      config_.rope_scaling.type == RopeScaling::Type::dynamic ? inv_freq_for(position_ids.max().item<int64_t>() + 1) : inv_freq_;
  const torch::Tensor freqs = positions.unsqueeze(-1) * inv_freq.to(positions.device());  // [batch, seq, dim/2]
  const torch::Tensor emb = at::cat({freqs, freqs}, -1);
  if (cos_sin_scale_ != 1.0) return {(emb.cos() * cos_sin_scale_).to(dtype), (emb.sin() * cos_sin_scale_).to(dtype)};
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(2) + rotated * sin.unsqueeze(2);
}

// ---- masks ---------------------------------------------------------------------------------------

namespace {

// A mask must cover exactly the cached and the new tokens of every row: a wider or narrower one
// would silently shift positions or hide keys.
void check_attention_mask(const torch::Tensor& attention_mask, int64_t batch, int64_t keys) {
  RANKTUNE_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch && attention_mask.size(1) == keys,
                 "attention_mask has shape ", attention_mask.sizes(), ", expected [", batch, ", ", keys,
                 "] (batch, cached + new tokens)");
}

}  // namespace

torch::Tensor position_ids(const torch::Tensor& attention_mask, int64_t batch, int64_t seq, int64_t past) {
  if (attention_mask.defined()) check_attention_mask(attention_mask, batch, past + seq);
  if (!attention_mask.defined()) {
    return at::arange(past, past + seq, at::TensorOptions().dtype(torch::kLong)).unsqueeze(0).expand({batch, seq});
  }
  const torch::Tensor mask = attention_mask.to(torch::kLong);
  torch::Tensor positions;
  if (past == 0 && mask.numel() > 0 && mask.max().item<int64_t>() > 1) {
    // Packed sequences (mask = 1, 1, 2, 2, 2, 3, ..., 0 for padding): positions restart at 0 where
    // the example number changes, so each example sees the positions it would see alone.
    const torch::Tensor index = at::arange(seq, mask.options()).unsqueeze(0).expand({batch, seq});
    const torch::Tensor starts = mask.ne(at::constant_pad_nd(mask, {1, 0}, -1).narrow(1, 0, seq));
    positions = index - std::get<0>(at::where(starts, index, at::zeros_like(index)).cummax(-1));
  } else {
    positions = mask.cumsum(-1) - 1;
  }
  positions.masked_fill_(attention_mask.eq(0), 1);
  return positions.narrow(1, positions.size(1) - seq, seq);
}

torch::Tensor attention_bias(const torch::Tensor& attention_mask, int64_t batch, int64_t seq, int64_t past,
                             torch::Dtype dtype, std::optional<int64_t> sliding_window) {
  const int64_t keys = past + seq;
  // On the mask's device (model.device) when there is a mask.
  const auto long_options = attention_mask.defined() ? attention_mask.options().dtype(torch::kLong)
                                                     : at::TensorOptions().dtype(torch::kLong);
  const torch::Tensor query_pos = at::arange(past, keys, long_options).unsqueeze(1);  // [seq, 1]
  const torch::Tensor key_pos = at::arange(0, keys, long_options).unsqueeze(0);      // [1, keys]
  torch::Tensor allowed = key_pos.le(query_pos);
  if (sliding_window) allowed = allowed.logical_and(key_pos.gt(query_pos - *sliding_window));
  torch::Tensor allowed_b = allowed.unsqueeze(0).unsqueeze(0).expand({batch, 1, seq, keys});
  if (attention_mask.defined()) {
    check_attention_mask(attention_mask, batch, keys);
    allowed_b = allowed_b.logical_and(attention_mask.ne(0).view({batch, 1, 1, keys}));
  }
  const double lowest = dtype == torch::kFloat64 ? std::numeric_limits<double>::lowest()
                        : dtype == torch::kBFloat16 ? -3.3895313892515355e38
                        : dtype == torch::kFloat16 ? -65504.0
                                                   : static_cast<double>(std::numeric_limits<float>::lowest());
  return at::zeros({batch, 1, seq, keys}, allowed_b.options().dtype(dtype)).masked_fill_(allowed_b.logical_not(), lowest);
}

// ---- attention -----------------------------------------------------------------------------------

namespace {

// softmax(q kᵀ / sqrt(d) + bias) v for one query per row (decoding), in plain loops: bmm without
// MKL splits its batch into one BLAS call (and three tensor selects) per batch × key/value head,
// which at batch 16 cost more than the step's weight reads. q [BK, R, D] (R query heads per
// key/value head), k [BK, keys, D] and v [BK, keys, Dv] with unit last stride, bias [BK / kv_heads,
// keys] fp32 or undefined. The products accumulate and the softmax runs in fp32 (the opmath type);
// the probabilities are rounded to q's dtype before multiplying v, as attention() does.
torch::Tensor single_query_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const torch::Tensor& bias, int64_t kv_heads) {
  const int64_t groups = q.size(0), reps = q.size(1), dim = q.size(2), keys = k.size(1), value_dim = v.size(2);
  torch::Tensor out = at::empty({groups, reps, value_dim}, q.options());
  const double scale = std::sqrt(static_cast<double>(dim));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "single_query_attention", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* kp = k.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t ks = k.stride(0), kk = k.stride(1), vs = v.stride(0), vk = v.stride(1);
    // Threads only for enough work to pay for waking them (~32k multiply-adds each).
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, keys * (dim + value_dim)));
    at::parallel_for(0, groups * reps, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> scores(static_cast<size_t>(keys)), acc(static_cast<size_t>(value_dim));
      for (int64_t row = begin; row < end; ++row) {
        const int64_t g = row / reps;
        const scalar_t* qr = qp + row * dim;
        acc_t top = -std::numeric_limits<acc_t>::infinity();
        for (int64_t j = 0; j < keys; ++j) {
          const scalar_t* kr = kp + g * ks + j * kk;
          acc_t dot = 0;
          for (int64_t d = 0; d < dim; ++d) dot += static_cast<acc_t>(qr[d]) * static_cast<acc_t>(kr[d]);
          // Rounded to the dtype as a product in it would be, divided, as transformers does.
          acc_t score = static_cast<acc_t>(static_cast<scalar_t>(dot)) / static_cast<acc_t>(scale);
          score = static_cast<acc_t>(static_cast<scalar_t>(score));
          if (bp != nullptr) score += bp[(g / kv_heads) * keys + j];
          scores[static_cast<size_t>(j)] = score;
          top = std::max(top, score);
        }
        acc_t total = 0;
        for (auto& s : scores) total += (s = std::exp(s - top));
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t j = 0; j < keys; ++j) {
          const acc_t p = static_cast<acc_t>(static_cast<scalar_t>(scores[static_cast<size_t>(j)] / total));
          const scalar_t* vr = vp + g * vs + j * vk;
          for (int64_t d = 0; d < value_dim; ++d) acc[static_cast<size_t>(d)] += p * static_cast<acc_t>(vr[d]);
        }
        for (int64_t d = 0; d < value_dim; ++d) op[row * value_dim + d] = static_cast<scalar_t>(acc[static_cast<size_t>(d)]);
      }
    });
  });
  return out;
}

// k or v [BK, keys, D] with a unit last stride (a view of the cache when it allows).
torch::Tensor rows_of(const torch::Tensor& t, int64_t groups) {
  torch::Tensor r = t.reshape({groups, t.size(2), t.size(3)});
  return r.stride(2) == 1 ? r : r.contiguous();
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias) {
  const int64_t batch = q.size(0), heads = q.size(1), seq = q.size(2), dim = q.size(3), value_dim = v.size(3);
  const int64_t kv_heads = k.size(1), keys = k.size(2);
  const int64_t n_rep = heads / kv_heads;
  if (seq == 1 && !q.requires_grad() && !k.requires_grad() && !v.requires_grad()) {
    const torch::Tensor b = bias.defined() ? bias.to(torch::kFloat32).reshape({batch, keys}).contiguous() : bias;
    return single_query_attention(q.contiguous().view({batch * kv_heads, n_rep, dim}), rows_of(k, batch * kv_heads),
                                  rows_of(v, batch * kv_heads), b, kv_heads)
        .view({batch, heads, seq, value_dim});
  }
  // Query heads h and h' share key/value head h / n_rep: fold the repeats into the sequence
  // dimension instead of copying k and v n_rep times (transformers' repeat_kv). Batch and key/value
  // heads fold into bmm's batch: what matmul does, without its dispatch (keys and values cut
  // from the cache's buffer fold without a copy).
  const torch::Tensor qg = q.contiguous().view({batch * kv_heads, n_rep * seq, dim});
  torch::Tensor scores = at::bmm(qg, k.reshape({batch * kv_heads, keys, dim}).transpose(1, 2));
  scores = scores.div_(std::sqrt(static_cast<double>(dim)));  // a division, as transformers
  if (bias.defined()) scores = scores.view({batch, heads, seq, keys}).add_(bias);
  torch::Tensor probs = at::softmax(scores, -1, torch::kFloat32);
  if (probs.scalar_type() != q.scalar_type()) probs = probs.to(q.scalar_type());
  return at::bmm(probs.view({batch * kv_heads, n_rep * seq, keys}), v.reshape({batch * kv_heads, keys, value_dim}))
      .view({batch, heads, seq, value_dim});
}

AttentionContext rotary_attention_context(const RotaryEmbedding& rotary, const torch::Tensor& attention_mask,
                                          int64_t batch, int64_t seq, KVCache* cache, torch::Dtype dtype,
                                          std::optional<int64_t> sliding_window) {
  const int64_t past = cache != nullptr ? cache->length() : 0;
  AttentionContext context;
  std::tie(context.cos, context.sin) = rotary.cos_sin(position_ids(attention_mask, batch, seq, past), dtype);
  context.attention_mask = attention_mask;
  context.sliding_window = sliding_window;
  context.cache = cache;
  if (cache == nullptr) return context;
  // One query without padding sees every cached key (within the window): no mask to add.
  const bool sees_every_key = seq == 1 && !attention_mask.defined() && (!sliding_window || past < *sliding_window);
  if (!sees_every_key) context.bias = attention_bias(attention_mask, batch, seq, past, dtype, sliding_window);
  const int64_t half = context.sin.size(-1) / 2;
  context.head_cos = context.cos.unsqueeze(2);
  context.head_sin_signed = context.sin.clone();
  context.head_sin_signed.narrow(-1, 0, half).neg_();
  context.head_sin_signed = context.head_sin_signed.unsqueeze(2);
  return context;
}

namespace {

// x ⊙ cos + rotate_half(x) ⊙ sin for x [B, T, heads, D] with the context's tables: rotate_half(x)
// ⊙ sin = swap_halves(x) ⊙ sin_signed, the same products (a sign moved from x to sin is exact).
torch::Tensor rotate_heads(const torch::Tensor& x, const AttentionContext& c) {
  std::vector<int64_t> halves = x.sizes().vec();
  halves.back() /= 2;
  halves.insert(halves.end() - 1, 2);
  const torch::Tensor swapped = x.view(halves).flip(-2).view(x.sizes());
  return swapped.mul_(c.head_sin_signed).add_(x * c.head_cos);
}

}  // namespace

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionContext& c,
                     int64_t layer_index) {
  const int64_t batch = q.size(0), seq = q.size(1), heads = q.size(2), dim = q.size(3);
  if (c.cache == nullptr) {
    return blocked_causal_attention(q, k, v, c.cos, c.sin, c.attention_mask, c.sliding_window)
        .view({batch, seq, heads * dim});
  }
  const torch::Tensor qr = c.head_cos.defined() ? rotate_heads(q, c) : c.cos.defined() ? apply_rotary(q, c.cos, c.sin) : q;
  const torch::Tensor kr = c.head_cos.defined() ? rotate_heads(k, c) : c.cos.defined() ? apply_rotary(k, c.cos, c.sin) : k;
  auto [keys, values] = c.cache->update(layer_index, kr.transpose(1, 2), v.transpose(1, 2));
  const torch::Tensor out = attention(qr.transpose(1, 2), keys, values, c.bias);
  return out.transpose(1, 2).reshape({batch, seq, heads * dim});
}

// ---- activations ------------------------------------------------------------------------

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  throw Error("unsupported activation '" + name + "'");
}

}  // namespace ranktune::model
