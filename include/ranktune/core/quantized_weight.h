#pragma once
// A frozen 2-D weight stored quantized (QLoRA's idea: the base, not the adapter, decides whether a
// model fits in memory), dequantized on demand one block of rows at a time.
//
//   int8  symmetric per output row: q = round(w / s_r) in [-127, 127], s_r = max_j |w_rj| / 127
//         (fp32 scale per row): 1 byte + 4/in bytes per parameter.
//   nf4   the row-major weight in blocks of 64: 4-bit indices into QLoRA's NormalFloat codebook
//         (Dettmers et al. 2023, the 16 values of bitsandbytes' NF4 map) times the block's absmax,
//         two indices per byte (the first element in the high nibble, as bitsandbytes packs):
//         0.5 + 4/64 bytes per parameter.
//   nf4 + double_quant: the block absmaxes c minus their mean μ (one fp32 offset) are themselves
//         stored as int8 in blocks of 256 with an fp32 scale each (QLoRA §3 "Double
//         Quantization"; bitsandbytes stores them in its dynamic 8-bit float map, we store linear
//         int8): 0.5 + 1/64 + 4/(64·256) bytes per parameter.
//
//   auto q = ranktune::QuantizedWeight::quantize(w, ranktune::QuantFormat::nf4, /*double_quant=*/true);
//   torch::Tensor rows = q.dequantize(/*first_row=*/0, /*row_count=*/128, torch::kFloat32);

#include <c10/core/ScalarType.h>
#include <torch/types.h>

#include <array>
#include <string>
#include <string_view>

namespace ranktune {

enum class QuantFormat { none, int8, nf4 };

// "none" (or ""), "int8", "nf4". Anything else throws ranktune::Error naming the value and the
// allowed ones; the caller adds where it came from (a recipe key, a flag).
QuantFormat parse_quant_format(std::string_view name);
std::string quant_format_name(QuantFormat format);

// QLoRA's NF4 codebook, ascending: the values bitsandbytes' kernels decode the 16 indices to.
const std::array<float, 16>& nf4_codebook();

class QuantizedWeight {
 public:
  static constexpr int64_t kNf4BlockSize = 64;
  static constexpr int64_t kScaleBlockSize = 256;  // double quantisation of the NF4 absmaxes

  QuantizedWeight() = default;
  // Quantizes `weight` ([rows, cols], any floating dtype; read, not kept). `double_quant` applies
  // to nf4 only (int8 has one scale per row already).
  static QuantizedWeight quantize(const torch::Tensor& weight, QuantFormat format, bool double_quant = false);
  // An all-zero weight in this format, at no cost beyond its bytes: a placeholder a loader fills.
  static QuantizedWeight zeros(QuantFormat format, int64_t rows, int64_t cols, bool double_quant = false);
  // Reassembles a weight from its stored parts (see codes() below), e.g. in a backward pass that
  // kept only the tensors; shapes are checked.
  static QuantizedWeight from_parts(QuantFormat format, int64_t rows, int64_t cols, torch::Tensor codes,
                                    torch::Tensor scales, torch::Tensor scale_scales, float scale_offset);

  // Rows [first_row, first_row + row_count) as `dtype`, a new contiguous [row_count, cols] tensor.
  torch::Tensor dequantize(int64_t first_row, int64_t row_count, torch::Dtype dtype) const;
  torch::Tensor dequantize(torch::Dtype dtype) const { return dequantize(0, rows_, dtype); }

  bool defined() const { return format_ != QuantFormat::none; }
  QuantFormat format() const { return format_; }
  bool double_quant() const { return scale_scales_.defined(); }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t numel() const { return rows_ * cols_; }
  // Bytes held: codes, scales and the double quantisation's scales and offset.
  int64_t nbytes() const;

  // The stored parts (for tests and the format's documentation):
  //   codes: int8 [rows, cols] (int8) or uint8 [ceil(rows·cols / 64) · 32] (nf4, packed, zero-padded)
  //   scales: fp32 [rows] (int8), fp32 [blocks] (nf4), int8 [blocks] (nf4 + double_quant)
  //   scale_scales: fp32 [ceil(blocks / 256)] (nf4 + double_quant), else undefined
  //   scale_offset: μ, the mean absmax (nf4 + double_quant), else 0
  const torch::Tensor& codes() const { return codes_; }
  const torch::Tensor& scales() const { return scales_; }
  const torch::Tensor& scale_scales() const { return scale_scales_; }
  float scale_offset() const { return scale_offset_; }
  // The fp32 absmax of every NF4 block (dequantized when double-quantised).
  torch::Tensor block_absmax() const;

 private:
  QuantFormat format_ = QuantFormat::none;
  int64_t rows_ = 0, cols_ = 0;
  torch::Tensor codes_, scales_, scale_scales_;
  float scale_offset_ = 0.0f;
};

}  // namespace ranktune
