#include "ranktune/core/quantized_weight.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace ranktune {
namespace {

using torch::Tensor;

// bitsandbytes' NF4 map (functional.py get_4bit_type "nf4", the values its dDequantizeNF4 kernel
// returns): 8 quantiles of N(0, 1) on each side of an exact zero, normalised to [-1, 1].
constexpr std::array<float, 16> kNf4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// The midpoints between neighbouring codebook values: x is nearest to value i when exactly i
// midpoints lie below it (on a tie, the lower value).
const std::array<double, 15>& nf4_midpoints() {
  static const std::array<double, 15> midpoints = [] {
    std::array<double, 15> m{};
    for (size_t i = 0; i < 15; ++i) m[i] = (static_cast<double>(kNf4[i]) + kNf4[i + 1]) / 2;
    return m;
  }();
  return midpoints;
}

// The nearest codebook index of x in [-1, 1] (a binary search over the midpoints).
uint8_t nearest_nf4(double x, const std::array<double, 15>& midpoints) {
  return static_cast<uint8_t>(std::lower_bound(midpoints.begin(), midpoints.end(), x) - midpoints.begin());
}

// Symmetric int8 of x with scale s (s = absmax / 127; 0 for an all-zero group).
int8_t to_int8(double x, double s) {
  return s > 0 ? static_cast<int8_t>(std::clamp(std::nearbyint(x / s), -127.0, 127.0)) : 0;
}

// The fp32 weight, contiguous (a copy only when it is not fp32 already).
Tensor float_rows(const Tensor& weight) { return weight.detach().to(at::kFloat).contiguous(); }

}  // namespace

QuantFormat parse_quant_format(std::string_view name) {
  if (name.empty() || name == "none") return QuantFormat::none;
  if (name == "int8") return QuantFormat::int8;
  if (name == "nf4") return QuantFormat::nf4;
  throw Error(c10::str("unknown quantization '", std::string(name), "' (allowed: none, int8, nf4)"));
}

std::string quant_format_name(QuantFormat format) {
  switch (format) {
    case QuantFormat::int8: return "int8";
    case QuantFormat::nf4: return "nf4";
    case QuantFormat::none: break;
  }
  return "none";
}

const std::array<float, 16>& nf4_codebook() { return kNf4; }

QuantizedWeight QuantizedWeight::quantize(const Tensor& weight, QuantFormat format, bool double_quant) {
  RANKTUNE_CHECK(weight.defined() && weight.dim() == 2 && weight.is_floating_point(),
                 "quantization needs a 2-D floating-point weight, got ",
                 weight.defined() ? c10::str(weight.sizes(), " ", weight.scalar_type()) : std::string("none"));
  RANKTUNE_CHECK(format != QuantFormat::none, "quantize: no format given");
  RANKTUNE_CHECK(!double_quant || format == QuantFormat::nf4, "double quantisation applies to nf4 only");
  at::NoGradGuard no_grad;
  QuantizedWeight q;
  q.format_ = format;
  q.rows_ = weight.size(0);
  q.cols_ = weight.size(1);
  const Tensor w = float_rows(weight);
  const float* wp = w.data_ptr<float>();
  const int64_t cols = q.cols_;

  if (format == QuantFormat::int8) {
    q.scales_ = at::linalg_vector_norm(w, INFINITY, {1}, false, c10::nullopt).div_(127.0f).contiguous();
    q.codes_ = at::empty({q.rows_, cols}, at::kChar);
    const float* sp = q.scales_.data_ptr<float>();
    int8_t* cp = q.codes_.data_ptr<int8_t>();
    at::parallel_for(0, q.rows_, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t c = 0; c < cols; ++c) cp[r * cols + c] = to_int8(wp[r * cols + c], sp[r]);
      }
    });
    return q;
  }

  // NF4: blocks of 64 over the row-major elements, the last one zero-padded.
  const int64_t n = q.numel();
  const int64_t blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  Tensor absmax = at::empty({blocks}, at::kFloat);
  q.codes_ = at::zeros({blocks * kNf4BlockSize / 2}, at::kByte);
  float* ap = absmax.data_ptr<float>();
  uint8_t* cp = q.codes_.data_ptr<uint8_t>();
  const auto& midpoints = nf4_midpoints();
  at::parallel_for(0, blocks, 64, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kNf4BlockSize, last = std::min(n, first + kNf4BlockSize);
      float m = 0.0f;
      for (int64_t e = first; e < last; ++e) m = std::max(m, std::abs(wp[e]));
      ap[b] = m;
      for (int64_t e = first; e < last; ++e) {
        const uint8_t index = m > 0 ? nearest_nf4(static_cast<double>(wp[e]) / m, midpoints) : 7;  // 7: the exact zero
        cp[e / 2] |= static_cast<uint8_t>(e % 2 == 0 ? index << 4 : index);
      }
      for (int64_t e = last; e < first + kNf4BlockSize; ++e) cp[e / 2] |= static_cast<uint8_t>(e % 2 == 0 ? 7 << 4 : 7);
    }
  });
  if (!double_quant) {
    q.scales_ = absmax;
    return q;
  }
  // Double quantisation: c - μ in int8, blocks of 256, fp32 scale each.
  q.scale_offset_ = absmax.mean().item<float>();
  const int64_t scale_blocks = (blocks + kScaleBlockSize - 1) / kScaleBlockSize;
  q.scale_scales_ = at::empty({scale_blocks}, at::kFloat);
  q.scales_ = at::empty({blocks}, at::kChar);
  float* ssp = q.scale_scales_.data_ptr<float>();
  int8_t* qsp = q.scales_.data_ptr<int8_t>();
  for (int64_t sb = 0; sb < scale_blocks; ++sb) {
    const int64_t first = sb * kScaleBlockSize, last = std::min(blocks, first + kScaleBlockSize);
    float m = 0.0f;
    for (int64_t b = first; b < last; ++b) m = std::max(m, std::abs(ap[b] - q.scale_offset_));
    ssp[sb] = m / 127.0f;
    for (int64_t b = first; b < last; ++b) qsp[b] = to_int8(ap[b] - q.scale_offset_, ssp[sb]);
  }
  return q;
}

QuantizedWeight QuantizedWeight::zeros(QuantFormat format, int64_t rows, int64_t cols, bool double_quant) {
  RANKTUNE_CHECK(format != QuantFormat::none, "quantize: no format given");
  RANKTUNE_CHECK(!double_quant || format == QuantFormat::nf4, "double quantisation applies to nf4 only");
  QuantizedWeight q;
  q.format_ = format;
  q.rows_ = rows;
  q.cols_ = cols;
  if (format == QuantFormat::int8) {
    q.codes_ = at::zeros({rows, cols}, at::kChar);
    q.scales_ = at::zeros({rows}, at::kFloat);
    return q;
  }
  const int64_t blocks = (rows * cols + kNf4BlockSize - 1) / kNf4BlockSize;
  q.codes_ = at::full({blocks * kNf4BlockSize / 2}, 0x77, at::kByte);  // index 7 (the zero) twice
  q.scales_ = at::zeros({blocks}, double_quant ? at::kChar : at::kFloat);
  if (double_quant) q.scale_scales_ = at::zeros({(blocks + kScaleBlockSize - 1) / kScaleBlockSize}, at::kFloat);
  return q;
}

QuantizedWeight QuantizedWeight::from_parts(QuantFormat format, int64_t rows, int64_t cols, Tensor codes,
                                            Tensor scales, Tensor scale_scales, float scale_offset) {
  QuantizedWeight q;
  q.format_ = format;
  q.rows_ = rows;
  q.cols_ = cols;
  q.codes_ = std::move(codes);
  q.scales_ = std::move(scales);
  q.scale_scales_ = scale_scales.defined() && scale_scales.numel() > 0 ? std::move(scale_scales) : Tensor();
  q.scale_offset_ = scale_offset;
  const int64_t blocks = (rows * cols + kNf4BlockSize - 1) / kNf4BlockSize;
  const bool ok =
      format == QuantFormat::int8
          ? q.codes_.scalar_type() == at::kChar && q.codes_.numel() == rows * cols &&
                q.scales_.scalar_type() == at::kFloat && q.scales_.numel() == rows && !q.scale_scales_.defined()
          : format == QuantFormat::nf4 && q.codes_.scalar_type() == at::kByte &&
                q.codes_.numel() == blocks * kNf4BlockSize / 2 && q.scales_.numel() == blocks &&
                (q.scale_scales_.defined()
                     ? q.scales_.scalar_type() == at::kChar &&
                           q.scale_scales_.numel() == (blocks + kScaleBlockSize - 1) / kScaleBlockSize
                     : q.scales_.scalar_type() == at::kFloat);
  RANKTUNE_CHECK(ok, "quantized weight parts do not fit a ", quant_format_name(format), " [", rows, ", ", cols,
                 "] weight");
  TORCH_INTERNAL_ASSERT(q.codes_.is_contiguous() && q.scales_.is_contiguous());
  return q;
}

Tensor QuantizedWeight::block_absmax() const {
  TORCH_INTERNAL_ASSERT(format_ == QuantFormat::nf4);
  if (!double_quant()) return scales_;
  const int64_t blocks = scales_.numel();
  Tensor out = at::empty({blocks}, at::kFloat);
  const int8_t* qsp = scales_.data_ptr<int8_t>();
  const float* ssp = scale_scales_.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for (int64_t b = 0; b < blocks; ++b) op[b] = static_cast<float>(qsp[b]) * ssp[b / kScaleBlockSize] + scale_offset_;
  return out;
}

Tensor QuantizedWeight::dequantize(int64_t first_row, int64_t row_count, torch::Dtype dtype) const {
  RANKTUNE_CHECK(defined(), "dequantize: the weight is not quantized");
  TORCH_INTERNAL_ASSERT(first_row >= 0 && row_count >= 0 && first_row + row_count <= rows_);
  Tensor out = at::empty({row_count, cols_}, at::TensorOptions().dtype(dtype));
  const int64_t cols = cols_;
  if (format_ == QuantFormat::int8) {
    const int8_t* cp = codes_.data_ptr<int8_t>() + first_row * cols;
    const float* sp = scales_.data_ptr<float>() + first_row;
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, dtype, "dequantize_int8", [&] {
      scalar_t* op = out.data_ptr<scalar_t>();
      at::parallel_for(0, row_count, 8, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const float s = sp[r];
          for (int64_t c = 0; c < cols; ++c) op[r * cols + c] = static_cast<scalar_t>(cp[r * cols + c] * s);
        }
      });
    });
    return out;
  }
  // NF4: the blocks covering the rows, their absmaxes first (dequantized once per block).
  const int64_t first = first_row * cols, count = row_count * cols;
  if (count == 0) return out;
  const int64_t first_block = first / kNf4BlockSize;
  const int64_t last_block = (first + count - 1) / kNf4BlockSize;
  const Tensor absmax = block_absmax().narrow(0, first_block, last_block - first_block + 1).contiguous();
  const float* ap = absmax.data_ptr<float>();
  const uint8_t* cp = codes_.data_ptr<uint8_t>();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, dtype, "dequantize_nf4", [&] {
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t e = first + i;
        const uint8_t byte = cp[e >> 1];
        const uint8_t index = (e & 1) ? (byte & 0x0F) : (byte >> 4);
        op[i] = static_cast<scalar_t>(kNf4[index] * ap[(e / kNf4BlockSize) - first_block]);
      }
    });
  });
  return out;
}

int64_t QuantizedWeight::nbytes() const {
  auto bytes = [](const Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : int64_t{0}; };
  return bytes(codes_) + bytes(scales_) + bytes(scale_scales_) + (double_quant() ? int64_t{sizeof(float)} : 0);
}

}  // namespace ranktune
