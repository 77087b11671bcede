// Reductions, deterministic on every device: each output is summed by one thread in a fixed
// order, so CPU and CUDA agree bit for bit on the same order of additions, and repeated runs agree.
//   sum_dim:  x: [outer, R, inner] -> y[o, j] = scale * sum_r x[o, r, j]      (y written with =);
//             long sums with few outputs (a bias gradient over T*B rows) first form 64-row
//             partial sums, so the GPU has more than one thread per output to work with
//   sum_all:  y = scale * sum_i x[i], in passes of 1024-wide partial sums
//   max_last: x: [rows, C] -> values[r] = max_c x[r, c], indices[r] = first argmax (i64)
//   top_k_last: x: [rows, C] -> values [rows, k], indices [rows, k] (i64): each row's k largest,
//             largest first, ties to the lower index (k <= C); one thread per row keeps a sorted
//             list of k in its output row, so most entries cost one comparison (small k: a beam's)
// Bytes: one read of x plus the outputs; the broadcast-back of a gradient is kernels::expand.
#pragma once

#include "core/tensor.h"

namespace kiln::kernels {

void sum_dim(const Tensor& x, int dim, double scale, const Tensor& y);
void sum_all(const Tensor& x, double scale, const Tensor& y);
void max_last(const Tensor& x, const Tensor& values, const Tensor& indices);
void top_k_last(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);
// grad_x[r, c] = (c == indices[r]) ? grad_values[r] : 0
void max_last_backward(const Tensor& indices, const Tensor& grad_values, const Tensor& grad_x);

}  // namespace kiln::kernels
