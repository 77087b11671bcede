#include "kernels/reduce.h"

#include <algorithm>

#include "kernels/dispatch.h"
#include "kernels/row_math.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

namespace {

// y[o * inner + j] = scale * sum_{r < R} x[(o * R + r) * inner + j]. Adjacent threads take
// adjacent j, so on CUDA the reads of one step of r are coalesced when inner > 1.
template <class T> struct SumDimFunctor {
  const T* x;
  T* y;
  int64_t reduce, inner;
  T scale;
  KILN_HD void operator()(int64_t i) const {
    int64_t o = i / inner, j = i % inner;
    const T* base = x + o * reduce * inner + j;
    T total = T(0);
    for (int64_t r = 0; r < reduce; ++r) total += base[r * inner];
    y[i] = total * scale;
  }
};

// First pass of a long reduction: partial[o, c, j] = sum of rows [c * chunk, (c + 1) * chunk)
// (clipped to R) of x[o, :, j]. A bias gradient is a [T*B, G] -> [G] sum: one thread per column
// would leave the GPU nearly idle with thousands of dependent loads per thread.
template <class T> struct SumChunkFunctor {
  const T* x;
  T* partial;
  int64_t reduce, inner, chunk, chunks;
  KILN_HD void operator()(int64_t i) const {
    int64_t j = i % inner, c = (i / inner) % chunks, o = i / (inner * chunks);
    int64_t end = (c + 1) * chunk < reduce ? (c + 1) * chunk : reduce;
    const T* base = x + o * reduce * inner + j;
    T total = T(0);
    for (int64_t r = c * chunk; r < end; ++r) total += base[r * inner];
    partial[i] = total;
  }
};

// One pass of sum_all: partial[j] = sum_{r : r * width + j < n} x[r * width + j].
template <class T> struct SumStridedFunctor {
  const T* x;
  T* partial;
  int64_t n, width;
  T scale;
  KILN_HD void operator()(int64_t j) const {
    T total = T(0);
    for (int64_t at = j; at < n; at += width) total += x[at];
    partial[j] = total * scale;
  }
};

template <class T> struct MaxLastFunctor {
  const T* x;
  T* values;
  int64_t* indices;
  int64_t cols;
  KILN_HD void operator()(int64_t row) const {
    const T* r = x + row * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c) {
      if (r[c] > r[best]) best = c;
    }
    values[row] = r[best];
    indices[row] = best;
  }
};

template <class T> struct TopKLastFunctor {
  const T* x;
  T* values;
  int64_t* indices;
  int64_t cols, k;
  KILN_HD void operator()(int64_t row) const {
    const T* r = x + row * cols;
    RowTopK<T> top{values + row * k, indices + row * k, k};
    offer_row(top, cols, RowValues{r});
  }
  struct RowValues {
    const T* r;
    KILN_HD T operator()(int64_t c) const { return r[c]; }
  };
};

template <class T> struct MaxLastBackwardFunctor {
  const int64_t* indices;
  const T* grad_values;
  T* grad_x;
  int64_t cols;
  KILN_HD void operator()(int64_t i) const {
    int64_t row = i / cols, c = i % cols;
    grad_x[i] = c == indices[row] ? grad_values[row] : T(0);
  }
};

// CPU sum over the middle dim of [outer, reduce, inner] when inner is wide: rows are streamed in
// order and each is added into a block of accumulators in SIMD lanes (contiguous loads), instead
// of one strided walk per output column. Each column is still summed in row order.
template <class T>
void sum_dim_rows_cpu(const T* x, T* y, int64_t outer, int64_t reduce, int64_t inner, T scale) {
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int threads = outer * blocks > 1 ? threads_for(outer * reduce * inner) : 1;
  profiler::ProfileScope scope("sum_dim rows", profiler::Category::kernel, threads > 1);
  scope.add_items(outer * blocks);
  cpu_for(threads, outer * blocks, [&](int64_t ob) {
    const int64_t o = ob / blocks, j0 = (ob % blocks) * kBlock,
                  width = std::min(kBlock, inner - j0);
    T acc[kBlock];  // the first `width` zeroed, not all 256
    for (int64_t j = 0; j < width; ++j) acc[j] = T(0);
    const T* base = x + o * reduce * inner + j0;
    for (int64_t r = 0; r < reduce; ++r) {
      const T* row = base + r * inner;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < width; ++j) y[o * inner + j0 + j] = acc[j] * scale;
  });
}

}  // namespace

void sum_dim(const Tensor& x, int dim, double scale, const Tensor& y) {
  int64_t outer = 1, inner = 1, reduce = x.size(dim);
  for (int d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  constexpr int64_t kChunk = 64;
  KILN_DISPATCH_FLOAT(x.dtype(), "sum", [&] {
    using T = scalar_t;
    if (x.device().is_cpu() && inner >= 8) {
      sum_dim_rows_cpu(x.data<T>(), y.data<T>(), outer, reduce, inner, T(scale));
      return;
    }
    if (reduce > 4 * kChunk && outer * inner < 65536) {
      // Few outputs, long sums: chunk the rows first (deterministic: fixed chunks, fixed order).
      int64_t chunks = (reduce + kChunk - 1) / kChunk;
      Tensor partial = empty({outer, chunks, inner}, x.options());
      parallel_for(
          x.device(), outer * chunks * inner,
          SumChunkFunctor<T>{x.data<T>(), partial.data<T>(), reduce, inner, kChunk, chunks},
          /*grain=*/256);
      parallel_for(x.device(), outer * inner,
                   SumDimFunctor<T>{partial.data<T>(), y.data<T>(), chunks, inner, T(scale)},
                   /*grain=*/256);
      return;
    }
    parallel_for(x.device(), outer * inner,
                 SumDimFunctor<T>{x.data<T>(), y.data<T>(), reduce, inner, T(scale)},
                 /*grain=*/256);
  });
}

void sum_all(const Tensor& x, double scale, const Tensor& y) {
  constexpr int64_t kWidth = 1024;
  KILN_DISPATCH_FLOAT(x.dtype(), "sum", [&] {
    Tensor current = x;
    // Each pass folds n values into min(n, width) partials, reading x with coalesced strides.
    while (current.numel() > kWidth) {
      int64_t n = current.numel();
      int64_t width = n > kWidth * kWidth ? kWidth * kWidth : kWidth;
      Tensor partial = empty({width}, x.options());
      parallel_for(x.device(), width,
                   SumStridedFunctor<scalar_t>{current.data<scalar_t>(), partial.data<scalar_t>(),
                                               n, width, scalar_t(1)},
                   /*grain=*/64);
      current = partial;
    }
    parallel_for(x.device(), 1,
                 SumStridedFunctor<scalar_t>{current.data<scalar_t>(), y.data<scalar_t>(),
                                             current.numel(), 1, scalar_t(scale)});
  });
}

void max_last(const Tensor& x, const Tensor& values, const Tensor& indices) {
  int64_t cols = x.size(-1), rows = x.numel() / cols;
  KILN_DISPATCH_FLOAT(x.dtype(), "max", [&] {
    parallel_for(x.device(), rows,
                 MaxLastFunctor<scalar_t>{x.data<scalar_t>(), values.data<scalar_t>(),
                                          indices.data<int64_t>(), cols},
                 /*grain=*/256);
  });
}

void top_k_last(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  int64_t cols = x.size(-1), rows = x.numel() / cols;
  KILN_DISPATCH_FLOAT(x.dtype(), "topk", [&] {
    parallel_for(x.device(), rows,
                 TopKLastFunctor<scalar_t>{x.data<scalar_t>(), values.data<scalar_t>(),
                                           indices.data<int64_t>(), cols, k},
                 /*grain=*/64);
  });
}

void max_last_backward(const Tensor& indices, const Tensor& grad_values, const Tensor& grad_x) {
  int64_t cols = grad_x.size(-1);
  KILN_DISPATCH_FLOAT(grad_x.dtype(), "max_backward", [&] {
    parallel_for(
        grad_x.device(), grad_x.numel(),
        MaxLastBackwardFunctor<scalar_t>{indices.data<int64_t>(), grad_values.data<scalar_t>(),
                                         grad_x.data<scalar_t>(), cols});
  });
}

}  // namespace kiln::kernels
