// Data movement and filling: the kernels behind factories, casts, transpose, cat, expand and the
// in-place updates. Each moves its output once (written with =, except axpy which does +=).
//   fill:        y[i] = value                             bytes: n * sizeof(T)
//   arange:      y[i] = start + i * step
//   cast:        y[i] = (Tout) x[i]                       bytes: n * (sizeof(Tin) + sizeof(Tout))
//   permute:     y = x with dims reordered (transpose is a swap of two)
//   block_copy:  dst[r, dst_col + c] = src[r, src_col + c] for r < rows, c < cols (cat, narrow)
//   expand:      y[i] = scale * x[broadcast offset of i]  (sum's and mean's backward)
//   axpy:        y[i] += alpha * x[i]                     bytes: 3 * n * sizeof(T)
//   uniform / normal: Philox draws, element i from counter (offset + i)
#pragma once

#include <vector>

#include "core/tensor.h"

namespace kiln::kernels {

void fill(const Tensor& y, double value);
void arange(const Tensor& y, double start, double step);
void cast(const Tensor& x, const Tensor& y);
void permute(const Tensor& x, const std::vector<int>& order, const Tensor& y);
// Both tensors are viewed as 2-D row-major matrices with the given leading dims (row lengths).
void block_copy(const Tensor& src, int64_t src_ld, int64_t src_col, const Tensor& dst,
                int64_t dst_ld, int64_t dst_col, int64_t rows, int64_t cols);
void expand(const Tensor& x, double scale, const Tensor& y);
void axpy(double alpha, const Tensor& x, const Tensor& y);
void scale(const Tensor& y, double factor);
void uniform(const Tensor& y, uint64_t seed, uint64_t offset, double low, double high);
void normal(const Tensor& y, uint64_t seed, uint64_t offset, double mean, double stddev);

}  // namespace kiln::kernels
