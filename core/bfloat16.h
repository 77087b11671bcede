// bfloat16: the top 16 bits of an IEEE f32 (1 sign, 8 exponent, 7 mantissa bits). It keeps f32's
// range and gives up precision (8 significant bits, relative step 2^-8 = 0.4%), which is what
// mixed-precision training wants: GEMM inputs move half the bytes and run on the matrix units,
// while sums and master weights stay in f32.
//
// Conversion from f32 rounds to nearest, ties to even, as PyTorch's c10::BFloat16 and CUDA's
// __float2bfloat16_rn do: add 0x7FFF plus the lowest kept bit, then truncate. NaN stays a (quiet)
// NaN with its sign; a value that rounds past the largest finite bf16 becomes infinity. f64
// converts through f32, as PyTorch does. The same code runs on the host and in CUDA kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace kiln {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  KILN_HD explicit bf16(float value) : bits(round_from_f32(value)) {}
  KILN_HD explicit bf16(double value) : bits(round_from_f32(static_cast<float>(value))) {}
  KILN_HD explicit bf16(int32_t value) : bits(round_from_f32(static_cast<float>(value))) {}
  KILN_HD explicit bf16(int64_t value) : bits(round_from_f32(static_cast<float>(value))) {}
  KILN_HD operator float() const { return to_f32(bits); }  // NOLINT: exact, so implicit

  static bf16 from_bits(uint16_t bits) {
    bf16 b;
    b.bits = bits;
    return b;
  }

  KILN_HD static uint16_t round_from_f32(float value) {
    uint32_t u;
    std::memcpy(&u, &value, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
    u += 0x7FFFu + ((u >> 16) & 1u);  // ties go to the even (lowest kept bit 0) neighbour
    return static_cast<uint16_t>(u >> 16);
  }
  KILN_HD static float to_f32(uint16_t bits) {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &u, sizeof value);
    return value;
  }
};

static_assert(sizeof(bf16) == 2, "bf16 must be two bytes, as tensors store it");

}  // namespace kiln
