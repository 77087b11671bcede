// Inverted dropout with a Philox mask: one Philox call gives four 32-bit words, and element i is
// kept when word i % 4 of philox(seed, offset + i / 4) (as a uniform u in [0, 1)) is >= p; kept
// elements are scaled by 1 / (1 - p). A call per element, using one word of four, made the RNG the
// whole cost (about 16 ns an element on the CPU). The backward regenerates the same mask from
// (seed, offset), so nothing but two integers is saved.
//   y[i] = keep_i ? x[i] / (1 - p) : 0        (forward and backward alike; bytes 2 n sizeof(T))
#pragma once

#include "core/random.h"
#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

// Call q handles elements 4 q .. 4 q + 3 (those below n): launch it over ceil(n / 4) calls.
// seed_cell: in a captured CUDA graph, the device word holding the seed (written before each
// replay); else null and `seed` is used.
template <class T> struct DropoutFunctor {
  const T* x;
  T* y;
  int64_t n;
  uint64_t seed, offset;
  const uint64_t* seed_cell;
  float p;
  T scale;
  KILN_HD void operator()(int64_t q) const {
    PhiloxOutput r =
        philox4x32(offset + static_cast<uint64_t>(q), 0, seed_cell ? *seed_cell : seed);
    for (int k = 0; k < 4; ++k) {
      int64_t i = 4 * q + k;
      if (i < n) y[i] = philox_uniform_float(r.x[k]) >= p ? x[i] * scale : T(0);
    }
  }
};

// y = mask(seed, offset) * x / (1 - p); also the backward (x = grad_y, y = grad_x).
void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset,
             const uint64_t* seed_cell = nullptr);

}  // namespace kiln::kernels
