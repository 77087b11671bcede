// Scalar math callable from host and device code with one spelling for float and double.
#pragma once

#include <math.h>

#include "kernels/parallel_for.h"

namespace kiln::math {

KILN_HD inline float exp(float x) { return ::expf(x); }
KILN_HD inline double exp(double x) { return ::exp(x); }
KILN_HD inline float log(float x) { return ::logf(x); }
KILN_HD inline double log(double x) { return ::log(x); }
KILN_HD inline float tanh(float x) { return ::tanhf(x); }
KILN_HD inline double tanh(double x) { return ::tanh(x); }
KILN_HD inline float sqrt(float x) { return ::sqrtf(x); }
KILN_HD inline double sqrt(double x) { return ::sqrt(x); }
KILN_HD inline float pow(float x, float p) { return ::powf(x, p); }
KILN_HD inline double pow(double x, double p) { return ::pow(x, p); }
KILN_HD inline float abs(float x) { return ::fabsf(x); }
KILN_HD inline double abs(double x) { return ::fabs(x); }

// 1 / (1 + e^-x), written so that neither branch overflows.
template <class T> KILN_HD inline T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  T e = exp(x);
  return e / (T(1) + e);
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
