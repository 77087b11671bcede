// Argument checks shared by the ops: each failure names the op and the tensors involved.
#pragma once

#include "core/tensor.h"

namespace kiln::ops_detail {

inline void check_defined(const char* op, const Tensor& t, const char* what) {
  KILN_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

inline void check_floating(const char* op, const Tensor& t) {
  check_defined(op, t, "input");
  KILN_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor (f32 or f64), got ",
             t.describe());
}

// Same dtype and same device, as every binary op requires (no implicit promotion or copies).
inline void check_compatible(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "first operand");
  check_defined(op, b, "second operand");
  KILN_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch: ", a.describe(), " vs ", b.describe(),
             " (convert one with to(x, dtype))");
  KILN_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.describe(), " vs ",
             b.describe(), " (move one with to(x, device))");
}

}  // namespace kiln::ops_detail
