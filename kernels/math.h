// Scalar math callable from host and device code with one spelling for float and double.
#pragma once

#include <math.h>

#include <type_traits>

#include "kernels/parallel_for.h"

namespace kiln::math {

// a * b + c, as one fused multiply-add where the build's CPU has FMA (x86-64-v3 and up; the build
// turns implicit contraction off, so only calls written like this fuse), else rounded twice.
inline float host_madd(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// Host float exp and tanh. glibc's expf and tanhf are calls (5.6 and 21 ns here) that dominated
// the CPU LSTM step; these are branch-free inline arithmetic the compiler vectorizes (exp
// Cephes-style, ~1-2 ulp; tanh a rational fit, below), so random inputs cost no mispredicted
// branches. CUDA uses its own expf/tanhf; double uses libm.

// e^x = 2^n e^r, n = round(x / ln 2), |r| <= ln(2) / 2; e^r by a degree-6 polynomial, its steps
// fused multiply-adds where the CPU has them (0.34 against 0.42 ns an element, AVX-512; within
// 1.2e-7 relative of e^x over [-87, 88], 8.1e-8 unfused). A NaN is computed as 0 and returned as
// itself: converting a NaN n to int would be undefined.
// kNonPositive, for x <= 0 only (a softmax row's x - max or x - lse): no upper clamp, and 2^n (n in
// [-126, 0]) as one factor; the same bits as the general form there (checked over every float in
// [-100, 0]), 22% faster on a 200-class cross-entropy row (133 -> 105 ns) and 31% on 8,000 classes.
template <bool kNonPositive> inline float host_expf(float x) {
  const float input = x;
  x = x == x ? x : 0.0f;
  x = x < -87.33654f ? -87.33654f : x;
  if constexpr (!kNonPositive) x = x > 88.72283f ? 88.72283f : x;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  float n = host_madd(x, 1.44269504088896341f, kRound) - kRound;
  float r = host_madd(n, 2.12194440e-4f, host_madd(n, -0.693359375f, x));
  float p = host_madd(1.9875691500e-4f, r, 1.3981999507e-3f);
  p = host_madd(p, r, 8.3334519073e-3f);
  p = host_madd(p, r, 4.1665795894e-2f);
  p = host_madd(p, r, 1.6666665459e-1f);
  p = host_madd(p, r, 5.0000001201e-1f);
  float e = host_madd(p, r * r, r + 1.0f);
  // 2^n as a float: for any x in two halves, so n = 128 (x near the top of the range) stays
  // representable; for x <= 0 one factor does.
  const int whole = static_cast<int>(n), half = kNonPositive ? 0 : whole / 2;
  int bits_a = (half + 127) << 23, bits_b = (whole - half + 127) << 23;
  float scale_a, scale_b;
  __builtin_memcpy(&scale_a, &bits_a, sizeof scale_a);
  __builtin_memcpy(&scale_b, &bits_b, sizeof scale_b);
  const float result = kNonPositive ? e * scale_b : e * scale_a * scale_b;
  return input == input ? result : input;
}

// tanh as a ratio of two odd/even polynomials in x (the minimax fit Eigen uses for float tanh),
// x clamped to +-7.9 where tanh is 1 in float: no exp and one division, 2.4x faster than through
// host_expf when vectorized (0.27 against 0.66 ns an element, AVX-512; 0.22 with FMA), within
// 4.1e-7 of tanh (6.9 ulp near +-1, measured over every float in [-12, 12]; 2.9e-7 with FMA; the
// exp form was 1.3 ulp). It is most of Bahdanau attention's score rows, [B, S, A] tanh per decoder
// step.
inline float host_tanhf(float x) {
  const float kClamp = 7.90531110763549805f;
  const float c = x < -kClamp ? -kClamp : (x > kClamp ? kClamp : x);
  const float s = c * c;
  float p = -2.76076847742355e-16f;
  p = host_madd(p, s, 2.00018790482477e-13f);
  p = host_madd(p, s, -8.60467152213735e-11f);
  p = host_madd(p, s, 5.12229709037114e-08f);
  p = host_madd(p, s, 1.48572235717979e-05f);
  p = host_madd(p, s, 6.37261928875436e-04f);
  p = host_madd(p, s, 4.89352455891786e-03f);
  float q = 1.19825839466702e-06f;
  q = host_madd(q, s, 1.18534705686654e-04f);
  q = host_madd(q, s, 2.26843463243900e-03f);
  q = host_madd(q, s, 4.89352518554385e-03f);
  const float r = p * c / q;
  // Near 0 tanh(x) = x in float (and a NaN stays a NaN through the clamp's comparisons as x).
  const float a = x < 0 ? -x : x;
  return a < 0.0004f || x != x ? x : r;
}

// e^x in float: expf on the GPU, host_expf on the host (kNonPositive: its form for x <= 0).
template <bool kNonPositive> KILN_HD inline float exp_float(float x) {
#ifdef __CUDA_ARCH__
  return ::expf(x);
#else
  return host_expf<kNonPositive>(x);
#endif
}
KILN_HD inline float exp(float x) { return exp_float<false>(x); }
KILN_HD inline double exp(double x) { return ::exp(x); }
// e^x for x <= 0 (a softmax row's x - max or x - lse, a log-probability): math::exp's value, faster
// on the host in float (host_expf<true>). Its one factor 2^n also holds up to x = 88.0; above that
// it gives inf where e^x is still finite (up to 88.72), so it is only for x <= 0.
KILN_HD inline float exp_nonpositive(float x) { return exp_float<true>(x); }
KILN_HD inline double exp_nonpositive(double x) { return ::exp(x); }
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

// The RNN gates' sigmoid: on the host in float, 0.5 + 0.5 tanh(x / 2) through host_tanhf (one
// rational, no exp: about 0.26 against 0.37 ns an element, AVX-512; the small LSTM step 2% faster).
// Within 1.7e-7 of the sigmoid absolutely (every float in [-30, 30]), not relatively: below about
// -9 its value is mostly rounding (0 below -15.8), which a gate scaling a state can take and a
// loss's log(sigmoid) could not, so math::sigmoid keeps the exp form. On CUDA and in double it is
// math::sigmoid.
template <class T> KILN_HD inline T gate_sigmoid(T x) {
#ifdef __CUDA_ARCH__
  return sigmoid(x);
#else
  if constexpr (std::is_same_v<T, float>) {
    return host_madd(0.5f, host_tanhf(0.5f * x), 0.5f);
  } else {
    return sigmoid(x);
  }
#endif
}

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
