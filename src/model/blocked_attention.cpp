#include "ranktune/model/blocked_attention.h"

#include "ranktune/core/autocast.h"
#include "ranktune/core/error.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>

namespace ranktune::model {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Optional inputs travel as empty tensors (see blocked_causal_attention).
bool present(const Tensor& t) { return t.defined() && t.numel() > 0; }

// x ⊙ cos + rotate_half(x) ⊙ sin with rotate_half(x) = [-x₂, x₁]; with `transposed`, the
// gradient map g ⊙ cos + rotate_halfᵀ(g ⊙ sin) with rotate_halfᵀ(y) = [y₂, -y₁]. cos/sin are
// [B, T, 1, D]. Written per half, without concatenating temporaries.
Tensor rotate(const Tensor& x, const Tensor& cos, const Tensor& sin, bool transposed) {
  const int64_t half = x.size(-1) / 2;
  Tensor out = x * cos;
  const Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  const Tensor s1 = sin.narrow(-1, 0, half), s2 = sin.narrow(-1, half, half);
  if (!transposed) {
    out.narrow(-1, 0, half).sub_(x2 * s1);  // -x₂ sin₁
    out.narrow(-1, half, half).add_(x1 * s2);  // +x₁ sin₂
  } else {
    out.narrow(-1, 0, half).add_(x2 * s2);  // (g sin)₂
    out.narrow(-1, half, half).sub_(x1 * s1);  // -(g sin)₁
  }
  return out;
}

// x [B, T, heads, D] with RoPE (cos/sin [B, T, D]) applied when given, times `scale`, laid out as
// [B, kv_heads, heads / kv_heads, T, D] so that a block of queries for one key/value head is one
// batched matrix.
Tensor grouped(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t kv_heads, double scale) {
  Tensor r = x;
  if (present(cos)) r = rotate(x, cos.unsqueeze(2), sin.unsqueeze(2), /*transposed=*/false);
  if (scale != 1.0) r = r * scale;
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), d = x.size(3);
  return r.view({b, t, kv_heads, h / kv_heads, d}).permute({0, 2, 3, 1, 4}).contiguous();
}

// The gradient of grouped() with respect to x, from a gradient in the grouped layout.
Tensor ungrouped_gradient(const Tensor& g, const Tensor& cos, const Tensor& sin, double scale) {
  const int64_t b = g.size(0), kv = g.size(1), rep = g.size(2), t = g.size(3), d = g.size(4);
  Tensor r = g.permute({0, 3, 1, 2, 4}).reshape({b, t, kv * rep, d});
  if (scale != 1.0) r = r * scale;
  if (present(cos)) r = rotate(r, cos.unsqueeze(2), sin.unsqueeze(2), /*transposed=*/true);
  return r;
}

struct Block {
  int64_t start, length, keys;  // queries [start, start + length) see keys [0, keys)
};

// True when the mask numbers packed examples (1, 1, 2, 2, ...) rather than marking tokens with 1.
bool is_packed(const Tensor& key_padding) { return present(key_padding) && key_padding.max().item<int64_t>() > 1; }

// Disallowed (query, key) pairs of a block, [B or 1, length, keys]: the future, padding keys, and
// keys beyond the sliding window; when `packed`, also keys of another example than the query's.
Tensor block_mask(const Block& blk, const Tensor& key_padding, int64_t window, bool packed) {
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const Tensor q_pos = at::arange(blk.start, blk.start + blk.length, long_options).unsqueeze(1);
  const Tensor k_pos = at::arange(0, blk.keys, long_options).unsqueeze(0);
  Tensor masked = k_pos.gt(q_pos);
  if (window > 0) masked = masked.logical_or(k_pos.le(q_pos - window));
  masked = masked.unsqueeze(0);
  if (present(key_padding)) masked = masked.logical_or(key_padding.narrow(1, 0, blk.keys).eq(0).unsqueeze(1));
  if (packed) {
    const Tensor query_example = key_padding.narrow(1, blk.start, blk.length).unsqueeze(2);
    masked = masked.logical_or(query_example.ne(key_padding.narrow(1, 0, blk.keys).unsqueeze(1)));
  }
  return masked;
}

// Scores of one block, [B·kv, rep·length, keys] in fp32, with the disallowed pairs at the lowest
// value (transformers' additive mask, so a fully masked row stays finite).
Tensor block_scores(const Tensor& q, const Tensor& k, const Block& blk, const Tensor& key_padding, int64_t window,
                    bool packed, Tensor* qb_out) {
  const int64_t b = q.size(0), kv = q.size(1), rep = q.size(2), d = q.size(4);
  const Tensor qb = q.narrow(3, blk.start, blk.length).reshape({b * kv, rep * blk.length, d});
  const Tensor kb = k.narrow(2, 0, blk.keys).reshape({b * kv, blk.keys, d});
  Tensor s = at::bmm(qb, kb.transpose(1, 2)).to(at::kFloat);
  const Tensor masked = block_mask(blk, key_padding, window, packed);
  s.view({b, kv * rep, blk.length, blk.keys})
      .masked_fill_(masked.unsqueeze(1), std::numeric_limits<float>::lowest());
  if (qb_out != nullptr) *qb_out = qb;
  return s;
}

std::vector<Block> blocks_of(int64_t t, int64_t size) {
  std::vector<Block> out;
  for (int64_t start = 0; start < t; start += size) {
    const int64_t length = std::min(size, t - start);
    out.push_back({start, length, start + length});
  }
  return out;
}

struct BlockedAttention : public torch::autograd::Function<BlockedAttention> {
  static Tensor forward(AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cos,
                        const Tensor& sin, const Tensor& key_padding, int64_t window, int64_t block) {
    const int64_t b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3), kv = k.size(2), rep = h / kv;
    const int64_t dv = v.size(3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const Tensor qg = grouped(q, cos, sin, kv, scale);               // [B, kv, rep, T, D]
    const Tensor kg = grouped(k, cos, sin, kv, 1.0).squeeze(2);      // [B, kv, T, D]
    const Tensor vg = v.permute({0, 2, 1, 3}).contiguous();          // [B, kv, T, Dv]
    Tensor out = at::empty({b, t, h, dv}, q.options());
    Tensor lse = at::empty({b, kv, rep, t}, q.options().dtype(at::kFloat));
    const bool packed = is_packed(key_padding);
    for (const Block& blk : blocks_of(t, block)) {
      Tensor s = block_scores(qg, kg, blk, key_padding, window, packed, nullptr);
      const Tensor row_lse = at::logsumexp(s, -1, /*keepdim=*/true);
      const Tensor p = s.sub_(row_lse).exp_().to(q.scalar_type());
      const Tensor ob = at::bmm(p, vg.narrow(2, 0, blk.keys).reshape({b * kv, blk.keys, dv}));
      out.narrow(1, blk.start, blk.length).view({b, blk.length, kv, rep, dv})
          .copy_(ob.view({b, kv, rep, blk.length, dv}).permute({0, 3, 1, 2, 4}));
      lse.narrow(3, blk.start, blk.length).copy_(row_lse.view({b, kv, rep, blk.length}));
    }
    ctx->save_for_backward({q, k, v, cos, sin, key_padding, out, lse});
    ctx->saved_data["window"] = window;
    ctx->saved_data["block"] = block;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &q = saved[0], &k = saved[1], &v = saved[2], &cos = saved[3], &sin = saved[4], &key_padding = saved[5],
                 &out = saved[6], &lse = saved[7];
    const int64_t window = ctx->saved_data["window"].toInt(), block = ctx->saved_data["block"].toInt();
    const int64_t b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3), kv = k.size(2), rep = h / kv;
    const int64_t dv = v.size(3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    // Recomputed instead of saved: RoPE'd and grouped q, k (and v's layout) are cheap to redo.
    const Tensor qg = grouped(q, cos, sin, kv, scale);
    const Tensor kg = grouped(k, cos, sin, kv, 1.0).squeeze(2);
    const Tensor vg = v.permute({0, 2, 1, 3}).contiguous();
    const Tensor go = grads[0].reshape({b, t, kv, rep, dv}).permute({0, 2, 3, 1, 4}).contiguous();  // [B, kv, rep, T, Dv]
    const Tensor og = out.view({b, t, kv, rep, dv}).permute({0, 2, 3, 1, 4});
    const Tensor row_dot = (go * og).sum(-1).to(at::kFloat);  // Σ_d dO·O per query row
    Tensor dqg = at::zeros_like(qg), dkg = at::zeros_like(kg), dvg = at::zeros_like(vg);
    const bool packed = is_packed(key_padding);
    for (const Block& blk : blocks_of(t, block)) {
      Tensor qb;
      Tensor s = block_scores(qg, kg, blk, key_padding, window, packed, &qb);
      const Tensor p = s.sub_(lse.narrow(3, blk.start, blk.length).reshape({b * kv, rep * blk.length, 1})).exp_();
      const Tensor gob = go.narrow(3, blk.start, blk.length).reshape({b * kv, rep * blk.length, dv});
      const Tensor vb = vg.narrow(2, 0, blk.keys).reshape({b * kv, blk.keys, dv});
      const Tensor kb = kg.narrow(2, 0, blk.keys).reshape({b * kv, blk.keys, d});
      const Tensor p_cast = p.to(q.scalar_type());
      dvg.narrow(2, 0, blk.keys).view({b * kv, blk.keys, dv}).add_(at::bmm(p_cast.transpose(1, 2), gob));
      Tensor ds = at::bmm(gob, vb.transpose(1, 2)).to(at::kFloat);
      ds.sub_(row_dot.narrow(3, blk.start, blk.length).reshape({b * kv, rep * blk.length, 1})).mul_(p);
      const Tensor ds_cast = ds.to(q.scalar_type());
      dqg.narrow(3, blk.start, blk.length).copy_(at::bmm(ds_cast, kb).view({b, kv, rep, blk.length, d}));
      dkg.narrow(2, 0, blk.keys).view({b * kv, blk.keys, d}).add_(at::bmm(ds_cast.transpose(1, 2), qb));
    }
    const Tensor dq = ungrouped_gradient(dqg, cos, sin, scale);
    const Tensor dk = ungrouped_gradient(dkg.unsqueeze(2), cos, sin, 1.0);
    const Tensor dvalue = dvg.permute({0, 2, 1, 3});
    return {dq, dk, dvalue, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor blocked_causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cos, const Tensor& sin,
                                const Tensor& key_padding_mask, std::optional<int64_t> sliding_window, int64_t block) {
  RANKTUNE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(2) % k.size(2) == 0 && k.size(3) == q.size(3) &&
                     v.size(2) == k.size(2),
                 "blocked_causal_attention: q [B, T, H, D], k [B, T, Hkv, D] and v [B, T, Hkv, Dv] with Hkv dividing H expected, got ",
                 q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  // LibTorch 1.13's custom functions reject undefined tensor inputs: absent ones travel as empty.
  auto or_empty = [&](const Tensor& t, at::ScalarType dtype) { return t.defined() ? t : at::empty({0}, q.options().dtype(dtype)); };
  auto apply = [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cos, const Tensor& sin) {
    return BlockedAttention::apply(q, k, v, or_empty(cos, q.scalar_type()), or_empty(sin, q.scalar_type()),
                                   or_empty(key_padding_mask, at::kLong), sliding_window.value_or(0),
                                   std::max<int64_t>(block, 1));
  };
  // Under autocast: q, k, v and RoPE's cos/sin in the autocast dtype (as transformers casts cos/sin
  // to the queries' dtype); the scores' softmax stays fp32 inside the kernel either way.
  if (const auto dtype = cpu_autocast_dtype()) {
    const NoCpuAutocast no_autocast;
    return apply(cast_floating(q, *dtype), cast_floating(k, *dtype), cast_floating(v, *dtype), cast_floating(cos, *dtype),
                 cast_floating(sin, *dtype));
  }
  return apply(q, k, v, cos, sin);
}

}  // namespace ranktune::model
