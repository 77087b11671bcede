// Inverted dropout with a Philox mask: element i is kept when u_i >= p, u_i uniform from
// (seed, offset + i); kept elements are scaled by 1 / (1 - p). The backward regenerates the same
// mask from (seed, offset), so nothing but two integers is saved.
//   y[i] = keep_i ? x[i] / (1 - p) : 0        (forward and backward alike; bytes 2 n sizeof(T))
#pragma once

#include "core/random.h"
#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

template <class T> struct DropoutFunctor {
  const T* x;
  T* y;
  uint64_t seed, offset;
  float p;
  T scale;
  KILN_HD void operator()(int64_t i) const {
    PhiloxOutput r = philox4x32(offset + static_cast<uint64_t>(i), 0, seed);
    y[i] = philox_uniform_float(r.x[0]) >= p ? x[i] * scale : T(0);
  }
};

// y = mask(seed, offset) * x / (1 - p); also the backward (x = grad_y, y = grad_x).
void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset);

}  // namespace kiln::kernels
