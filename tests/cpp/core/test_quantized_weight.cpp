// QuantizedWeight against an independent float64 implementation written here from the formats'
// definitions (int8 per output row; NF4 codebook, block absmax, double quantisation).

#include "ranktune/core/quantized_weight.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace ranktune {
namespace {

using torch::Tensor;
using ranktune::testing::error_of;

// bitsandbytes' NF4 values (bitsandbytes/functional.py, get_4bit_type("nf4")), copied here on
// purpose rather than read from the library under test.
const double kReferenceNf4[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                                  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                                  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                                  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                                  0.7229568362236023, 1.0};

Tensor weight(int64_t rows, int64_t cols, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({rows, cols}) * 0.05;
}

// The 4-bit indices, unpacked: element e is in byte e/2, the even one in the high nibble.
std::vector<int> unpack(const Tensor& codes, int64_t n) {
  std::vector<int> out(n);
  const uint8_t* p = codes.data_ptr<uint8_t>();
  for (int64_t e = 0; e < n; ++e) out[e] = (e % 2 == 0) ? (p[e / 2] >> 4) : (p[e / 2] & 0x0F);
  return out;
}

TEST(QuantizedWeightTest, Int8PerRowMatchesFloat64Reference) {
  Tensor w = weight(37, 50, 1);
  w[5].zero_();  // an all-zero row: scale 0, codes 0, no division by zero
  const auto q = QuantizedWeight::quantize(w, QuantFormat::int8);
  ASSERT_EQ(q.codes().scalar_type(), at::kChar);
  const auto* codes = q.codes().data_ptr<int8_t>();
  const auto* scales = q.scales().data_ptr<float>();
  const Tensor deq = q.dequantize(at::kDouble);
  for (int64_t r = 0; r < 37; ++r) {
    double absmax = 0;
    for (int64_t c = 0; c < 50; ++c) absmax = std::max(absmax, std::abs(w[r][c].item<double>()));
    const double scale = static_cast<float>(absmax) / 127.0f;  // stored as fp32
    EXPECT_NEAR(scales[r], scale, 1e-12) << r;
    for (int64_t c = 0; c < 50; ++c) {
      const double x = w[r][c].item<double>();
      const int expected = scale > 0 ? static_cast<int>(std::clamp(std::nearbyint(x / scale), -127.0, 127.0)) : 0;
      ASSERT_EQ(codes[r * 50 + c], expected) << r << "," << c;
      // code × scale, rounded once to fp32.
      EXPECT_NEAR(deq[r][c].item<double>(), expected * static_cast<double>(scales[r]), 1e-7 * absmax);
      // Rounding to the nearest step: at most half a step of error.
      EXPECT_LE(std::abs(deq[r][c].item<double>() - x), scale / 2 + 1e-9);
    }
  }
}

TEST(QuantizedWeightTest, Nf4BlocksMatchFloat64Reference) {
  // 33 x 70 = 2310 elements: blocks cross rows and the last block is padded.
  const Tensor w = weight(33, 70, 2);
  const auto q = QuantizedWeight::quantize(w, QuantFormat::nf4);
  const int64_t n = 33 * 70, blocks = (n + 63) / 64;
  ASSERT_EQ(q.scales().numel(), blocks);
  ASSERT_EQ(q.codes().numel(), blocks * 32);
  const std::vector<int> indices = unpack(q.codes(), blocks * 64);
  const Tensor flat = w.reshape({-1}).to(at::kDouble);
  const Tensor deq = q.dequantize(at::kDouble).reshape({-1});
  const double* f = flat.data_ptr<double>();
  for (int64_t b = 0; b < blocks; ++b) {
    double absmax = 0;
    for (int64_t e = b * 64; e < std::min(n, (b + 1) * 64); ++e) absmax = std::max(absmax, std::abs(f[e]));
    EXPECT_EQ(q.scales()[b].item<float>(), static_cast<float>(absmax)) << b;
    for (int64_t e = b * 64; e < std::min(n, (b + 1) * 64); ++e) {
      int best = 0;
      for (int i = 1; i < 16; ++i) {
        if (std::abs(f[e] / absmax - kReferenceNf4[i]) < std::abs(f[e] / absmax - kReferenceNf4[best])) best = i;
      }
      ASSERT_EQ(indices[e], best) << e;
      EXPECT_NEAR(deq[e].item<double>(), kReferenceNf4[best] * absmax, 1e-7 * absmax);
    }
  }
  for (int64_t e = n; e < blocks * 64; ++e) EXPECT_EQ(indices[e], 7) << "padding decodes to 0";
}

TEST(QuantizedWeightTest, Nf4DoubleQuantMatchesFloat64Reference) {
  // 300 x 128 = 600 blocks of 64: three scale blocks of 256, the last one partial.
  const Tensor w = weight(300, 128, 3);
  const auto plain = QuantizedWeight::quantize(w, QuantFormat::nf4);
  const auto q = QuantizedWeight::quantize(w, QuantFormat::nf4, /*double_quant=*/true);
  ASSERT_TRUE(q.double_quant());
  EXPECT_TRUE(at::equal(q.codes(), plain.codes())) << "the codes use the exact absmax, as bitsandbytes does";
  const Tensor absmax = plain.scales().to(at::kDouble);
  const double mean = absmax.mean().item<double>();
  EXPECT_NEAR(q.scale_offset(), mean, 1e-6 * mean);
  ASSERT_EQ(q.scale_scales().numel(), 3);
  const Tensor decoded = q.block_absmax().to(at::kDouble);
  for (int64_t sb = 0; sb < 3; ++sb) {
    // c - μ in fp32, as stored; the rest in float64.
    const Tensor part = (plain.scales().narrow(0, sb * 256, std::min<int64_t>(256, 600 - sb * 256)) - q.scale_offset())
                            .to(at::kDouble);
    const double step = part.abs().max().item<double>() / 127.0;
    EXPECT_NEAR(q.scale_scales()[sb].item<double>(), step, 1e-6 * step);
    for (int64_t i = 0; i < part.numel(); ++i) {
      const int64_t b = sb * 256 + i;
      const double code = std::nearbyint(part[i].item<double>() / q.scale_scales()[sb].item<double>());
      EXPECT_EQ(q.scales()[b].item<int>(), static_cast<int>(code)) << b;
      EXPECT_NEAR(decoded[b].item<double>(), code * q.scale_scales()[sb].item<double>() + q.scale_offset(), 1e-7);
      EXPECT_LE(std::abs(decoded[b].item<double>() - absmax[b].item<double>()), step / 2 + 1e-7);
    }
  }
  // Dequantized values are the codebook value times the decoded absmax.
  const std::vector<int> indices = unpack(q.codes(), 300 * 128);
  const Tensor deq = q.dequantize(at::kDouble).reshape({-1});
  for (int64_t e = 0; e < 300 * 128; e += 97) {
    EXPECT_NEAR(deq[e].item<double>(), kReferenceNf4[indices[e]] * decoded[e / 64].item<double>(), 1e-7);
  }
}

TEST(QuantizedWeightTest, RowRangesEqualSlicesOfTheWholeWeight) {
  const Tensor w = weight(33, 70, 4);
  for (const auto& q : {QuantizedWeight::quantize(w, QuantFormat::int8), QuantizedWeight::quantize(w, QuantFormat::nf4),
                        QuantizedWeight::quantize(w, QuantFormat::nf4, true)}) {
    const Tensor whole = q.dequantize(at::kFloat);
    for (auto [first, count] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {3, 7}, {32, 1}, {10, 23}}) {
      EXPECT_TRUE(at::equal(q.dequantize(first, count, at::kFloat), whole.narrow(0, first, count)))
          << quant_format_name(q.format()) << " rows " << first << "+" << count;
    }
    EXPECT_TRUE(at::allclose(q.dequantize(at::kBFloat16).to(at::kFloat), whole, 1e-2, 1e-4));
  }
}

TEST(QuantizedWeightTest, BytesPerParameterAreAQuarterAndAboutASeventhOfFp32) {
  // SmolLM2-135M's q_proj shape: 576 x 576.
  const Tensor w = weight(576, 576, 5);
  const double fp32 = 4.0 * w.numel();
  const auto int8 = QuantizedWeight::quantize(w, QuantFormat::int8);
  const auto nf4 = QuantizedWeight::quantize(w, QuantFormat::nf4);
  const auto nf4_dq = QuantizedWeight::quantize(w, QuantFormat::nf4, true);
  EXPECT_EQ(int8.nbytes(), 576 * 576 + 4 * 576);                              // 1 + 4/in bytes
  EXPECT_EQ(nf4.nbytes(), 576 * 576 / 2 + 4 * (576 * 576 / 64));               // 0.5 + 4/64
  EXPECT_EQ(nf4_dq.nbytes(), 576 * 576 / 2 + 576 * 576 / 64 + 4 * 21 + 4);     // 0.5 + 1/64 + ...
  EXPECT_NEAR(fp32 / int8.nbytes(), 4.0, 0.05);
  EXPECT_NEAR(fp32 / nf4.nbytes(), 7.1, 0.05);
  EXPECT_NEAR(fp32 / nf4_dq.nbytes(), 7.75, 0.05);
}

TEST(QuantizedWeightTest, UnknownFormatNamesTheAllowedOnes) {
  EXPECT_EQ(parse_quant_format("int8"), QuantFormat::int8);
  EXPECT_EQ(parse_quant_format("nf4"), QuantFormat::nf4);
  EXPECT_EQ(parse_quant_format("none"), QuantFormat::none);
  const std::string message = error_of([] { parse_quant_format("int4"); });
  EXPECT_NE(message.find("'int4'"), std::string::npos) << message;
  EXPECT_NE(message.find("none, int8, nf4"), std::string::npos) << message;
  EXPECT_NE(error_of([] { QuantizedWeight::quantize(at::ones({4}), QuantFormat::int8); }).find("2-D"), std::string::npos);
  EXPECT_NE(error_of([] { QuantizedWeight::quantize(at::ones({4, 4}), QuantFormat::int8, true); }).find("nf4 only"),
            std::string::npos);
}

}  // namespace
}  // namespace ranktune
