// Scalar math callable from host and device code with one spelling for float and double.
#pragma once

#include <math.h>

#include "kernels/parallel_for.h"

namespace kiln::math {

// Host float exp and tanh. glibc's expf and tanhf are calls (5.6 and 21 ns here) that dominated
// the CPU LSTM step; these Cephes-style versions are branch-free inline arithmetic (~1-2 ulp), so
// random inputs cost no mispredicted branches. CUDA uses its own expf/tanhf; double uses libm.
inline float host_expf(float x) {
  // e^x = 2^n e^r, n = round(x / ln 2), |r| <= ln(2) / 2; e^r by a degree-6 polynomial.
  // A NaN is computed as 0 and returned as itself: converting a NaN n to int would be undefined.
  const float input = x;
  x = x == x ? x : 0.0f;
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p =
      ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) *
           r +
       1.6666665459e-1f) *
          r +
      5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  // 2^n as a float, in two halves so n = 128 (x near the top of the range) stays representable.
  int half = static_cast<int>(n) / 2;
  int bits_a = (half + 127) << 23, bits_b = (static_cast<int>(n) - half + 127) << 23;
  float scale_a, scale_b;
  __builtin_memcpy(&scale_a, &bits_a, sizeof scale_a);
  __builtin_memcpy(&scale_b, &bits_b, sizeof scale_b);
  const float result = e * scale_a * scale_b;
  return input == input ? result : input;
}

inline float host_tanhf(float x) {
  float a = x < 0 ? -x : x;
  float s = x * x;  // near 0 an odd polynomial keeps full relative accuracy
  float small = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s +
                  1.33314422036e-1f) *
                     s -
                 3.33332819422e-1f) *
                    s * x +
                x;
  float large = 1.0f - 2.0f / (host_expf(2.0f * a) + 1.0f);
  large = x < 0 ? -large : large;
  return a < 0.625f ? small : large;
}

KILN_HD inline float exp(float x) {
#ifdef __CUDA_ARCH__
  return ::expf(x);
#else
  return host_expf(x);
#endif
}
KILN_HD inline double exp(double x) { return ::exp(x); }
KILN_HD inline float log(float x) { return ::logf(x); }
KILN_HD inline double log(double x) { return ::log(x); }
KILN_HD inline float tanh(float x) {
#ifdef __CUDA_ARCH__
  return ::tanhf(x);
#else
  return host_tanhf(x);
#endif
}
KILN_HD inline double tanh(double x) { return ::tanh(x); }
KILN_HD inline float sqrt(float x) { return ::sqrtf(x); }
KILN_HD inline double sqrt(double x) { return ::sqrt(x); }
KILN_HD inline float pow(float x, float p) { return ::powf(x, p); }
KILN_HD inline double pow(double x, double p) { return ::pow(x, p); }
KILN_HD inline float abs(float x) { return ::fabsf(x); }
KILN_HD inline double abs(double x) { return ::fabs(x); }

// 1 / (1 + e^-x). For very negative x, e^-x overflows to inf (or clamps on the host) and the
// result is 0, never NaN, so no branch is needed.
template <class T> KILN_HD inline T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }

// a * b rounded on its own, never fused into a following add: nvcc contracts a * b + c into one
// FMA, the host compiler does not, and bit-identical CPU/CUDA results (random draws) need neither.
KILN_HD inline float mul_unfused(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KILN_HD inline double mul_unfused(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// False for inf and NaN (x - x is NaN for both); needs no intrinsic on either side.
template <class T> KILN_HD inline bool is_finite(T x) { return x - x == T(0); }

template <class T> KILN_HD inline T max(T a, T b) { return a > b ? a : b; }
template <class T> KILN_HD inline T min(T a, T b) { return a < b ? a : b; }

}  // namespace kiln::math
