// Pointwise ops. Each op is one struct holding its forward formula and, right below, its
// derivative, as KILN_HD templates; the same struct runs on the CPU and on CUDA.
//
//   unary:  y = f(x);          grad_x = f'(x) * grad_y, written with x and/or y
//   binary: y = f(a, b) with NumPy broadcasting; grad_a, grad_b at the output's shape (the
//           autograd op sums them back to the operand's shape)
// Bytes: unary forward reads x, writes y (2 * n * sizeof(T)); backward reads grad_y and x or y
// and writes grad_x (3 * n * sizeof(T)). Binary forward moves 3 * n * sizeof(T) when no operand
// is broadcast.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

// ---- unary ops: forward(x), backward(x, y, grad_y) ------------------------------------------
// kUsesInput / kUsesOutput say which of x and y the backward reads, so autograd saves only those.

struct NegOp {
  static constexpr bool kUsesInput = false, kUsesOutput = false;
  template <class T> KILN_HD T forward(T x) const { return -x; }
  template <class T> KILN_HD T backward(T, T, T gy) const { return -gy; }
};
struct ExpOp {
  static constexpr bool kUsesInput = false, kUsesOutput = true;
  template <class T> KILN_HD T forward(T x) const { return math::exp(x); }
  template <class T> KILN_HD T backward(T, T y, T gy) const { return gy * y; }
};
struct LogOp {
  static constexpr bool kUsesInput = true, kUsesOutput = false;
  template <class T> KILN_HD T forward(T x) const { return math::log(x); }
  template <class T> KILN_HD T backward(T x, T, T gy) const { return gy / x; }
};
struct TanhOp {
  static constexpr bool kUsesInput = false, kUsesOutput = true;
  template <class T> KILN_HD T forward(T x) const { return math::tanh(x); }
  template <class T> KILN_HD T backward(T, T y, T gy) const { return gy * (T(1) - y * y); }
};
struct SigmoidOp {
  static constexpr bool kUsesInput = false, kUsesOutput = true;
  template <class T> KILN_HD T forward(T x) const { return math::sigmoid(x); }
  template <class T> KILN_HD T backward(T, T y, T gy) const { return gy * y * (T(1) - y); }
};
struct ReluOp {
  static constexpr bool kUsesInput = true, kUsesOutput = false;
  template <class T> KILN_HD T forward(T x) const { return x > T(0) ? x : T(0); }
  template <class T> KILN_HD T backward(T x, T, T gy) const { return x > T(0) ? gy : T(0); }
};
struct SqrtOp {
  static constexpr bool kUsesInput = false, kUsesOutput = true;
  template <class T> KILN_HD T forward(T x) const { return math::sqrt(x); }
  template <class T> KILN_HD T backward(T, T y, T gy) const { return gy / (T(2) * y); }
};
struct PowScalarOp {  // y = x^p
  static constexpr bool kUsesInput = true, kUsesOutput = false;
  double p;
  template <class T> KILN_HD T forward(T x) const { return math::pow(x, T(p)); }
  template <class T> KILN_HD T backward(T x, T, T gy) const {
    return gy * T(p) * math::pow(x, T(p - 1));
  }
};
struct AddScalarOp {  // y = x + s
  static constexpr bool kUsesInput = false, kUsesOutput = false;
  double s;
  template <class T> KILN_HD T forward(T x) const { return x + T(s); }
  template <class T> KILN_HD T backward(T, T, T gy) const { return gy; }
};
struct MulScalarOp {  // y = x * s
  static constexpr bool kUsesInput = false, kUsesOutput = false;
  double s;
  template <class T> KILN_HD T forward(T x) const { return x * T(s); }
  template <class T> KILN_HD T backward(T, T, T gy) const { return gy * T(s); }
};
struct RSubScalarOp {  // y = s - x
  static constexpr bool kUsesInput = false, kUsesOutput = false;
  double s;
  template <class T> KILN_HD T forward(T x) const { return T(s) - x; }
  template <class T> KILN_HD T backward(T, T, T gy) const { return -gy; }
};
struct RDivScalarOp {  // y = s / x, dy/dx = -s / x^2 = -y / x
  static constexpr bool kUsesInput = true, kUsesOutput = true;
  double s;
  template <class T> KILN_HD T forward(T x) const { return T(s) / x; }
  template <class T> KILN_HD T backward(T x, T y, T gy) const { return -gy * y / x; }
};

// ---- binary ops: forward(a, b), grad_a(a, b, y, g), grad_b(a, b, y, g) ----------------------

struct AddOp {
  template <class T> KILN_HD T forward(T a, T b) const { return a + b; }
  template <class T> KILN_HD T grad_a(T, T, T, T g) const { return g; }
  template <class T> KILN_HD T grad_b(T, T, T, T g) const { return g; }
};
struct SubOp {
  template <class T> KILN_HD T forward(T a, T b) const { return a - b; }
  template <class T> KILN_HD T grad_a(T, T, T, T g) const { return g; }
  template <class T> KILN_HD T grad_b(T, T, T, T g) const { return -g; }
};
struct MulOp {
  template <class T> KILN_HD T forward(T a, T b) const { return a * b; }
  template <class T> KILN_HD T grad_a(T, T b, T, T g) const { return g * b; }
  template <class T> KILN_HD T grad_b(T a, T, T, T g) const { return g * a; }
};
struct DivOp {
  template <class T> KILN_HD T forward(T a, T b) const { return a / b; }
  template <class T> KILN_HD T grad_a(T, T b, T, T g) const { return g / b; }
  template <class T> KILN_HD T grad_b(T, T b, T y, T g) const { return -g * y / b; }
};
struct PowOp {  // y = a^b (a > 0 where b is differentiated)
  template <class T> KILN_HD T forward(T a, T b) const { return math::pow(a, b); }
  template <class T> KILN_HD T grad_a(T a, T b, T, T g) const {
    return g * b * math::pow(a, b - T(1));
  }
  template <class T> KILN_HD T grad_b(T a, T, T y, T g) const { return g * y * math::log(a); }
};

// ---- launchers (defined in pointwise.cpp, compiled for CPU and CUDA) ------------------------

enum class UnaryKind {
  neg,
  exp,
  log,
  tanh,
  sigmoid,
  relu,
  sqrt,
  pow_scalar,
  add_scalar,
  mul_scalar,
  rsub_scalar,
  rdiv_scalar
};
enum class BinaryKind { add, sub, mul, div, pow };

struct UnaryInfo {
  const char* name;
  bool uses_input;
  bool uses_output;
};
UnaryInfo unary_info(UnaryKind kind);
const char* binary_name(BinaryKind kind);

// y[i] = f(x[i]); y has x's shape, dtype and device.
void unary_forward(UnaryKind kind, double scalar, const Tensor& x, const Tensor& y);
// grad_x[i] = f'(x[i]) * grad_y[i]; x or y may be undefined when the op does not read it.
void unary_backward(UnaryKind kind, double scalar, const Tensor& x, const Tensor& y,
                    const Tensor& grad_y, const Tensor& grad_x);
// y = f(a, b), y at the broadcast shape.
void binary_forward(BinaryKind kind, const Tensor& a, const Tensor& b, const Tensor& y);
// grad_a_full / grad_b_full at y's shape; either may be undefined (not needed).
void binary_backward(BinaryKind kind, const Tensor& a, const Tensor& b, const Tensor& y,
                     const Tensor& grad_y, const Tensor& grad_a_full, const Tensor& grad_b_full);

}  // namespace kiln::kernels
