#include "kernels/copy.h"

#include <algorithm>

#include "core/random.h"
#include "kernels/broadcast.h"
#include "kernels/dispatch.h"
#include "kernels/math.h"

namespace kiln::kernels {

namespace {

template <class T> struct FillFunctor {
  T* y;
  T value;
  KILN_HD void operator()(int64_t i) const { y[i] = value; }
};

template <class T> struct ArangeFunctor {
  T* y;
  double start, step;
  KILN_HD void operator()(int64_t i) const {
    y[i] = static_cast<T>(start + static_cast<double>(i) * step);
  }
};

template <class In, class Out> struct CastFunctor {
  const In* x;
  Out* y;
  KILN_HD void operator()(int64_t i) const { y[i] = static_cast<Out>(x[i]); }
};

// y (sizes out_sizes) at flat index i takes x at sum_d coord_d * in_strides[d], where in_strides
// are x's strides reordered to y's dim order.
template <class T> struct PermuteFunctor {
  const T* x;
  T* y;
  int ndim;
  int64_t out_sizes[kMaxDims];
  int64_t in_strides[kMaxDims];
  KILN_HD void operator()(int64_t i) const {
    int64_t rest = i, offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      offset += (rest % out_sizes[d]) * in_strides[d];
      rest /= out_sizes[d];
    }
    y[i] = x[offset];
  }
};

// The CPU's 2-D transpose (the last two dims swapped, any leading dims kept): y[b][c][r] =
// x[b][r][c] in kTransposeTile-square tiles, one tile per call, so a tile's reads and writes each
// stay in a few cache lines. The flat functor above reads with a stride of a whole row per element
// and pays two divisions for each: a [1536, 512] weight took 2 ms (1.5 GB/s), which prepared
// decoding and the recurrent weight packing pay every batch.
constexpr int64_t kTransposeTile = 32;
template <class T> struct TransposeTileFunctor {
  const T* x;
  T* y;
  int64_t rows, cols, tiles_down, tiles_across;  // of one matrix
  void operator()(int64_t tile) const {
    const int64_t per_matrix = tiles_down * tiles_across, matrix = tile / per_matrix;
    const int64_t r0 = (tile % per_matrix) / tiles_across * kTransposeTile,
                  c0 = (tile % per_matrix) % tiles_across * kTransposeTile;
    const T* in = x + matrix * rows * cols;
    T* out = y + matrix * rows * cols;
    const int64_t h = std::min(kTransposeTile, rows - r0), w = std::min(kTransposeTile, cols - c0);
    // Through a tile on the stack: rows read contiguously in, rows written contiguously out; the
    // strided walk is over the tile, in L1.
    T tile_buffer[kTransposeTile][kTransposeTile + 1];
    for (int64_t r = 0; r < h; ++r) {
      for (int64_t c = 0; c < w; ++c) tile_buffer[r][c] = in[(r0 + r) * cols + c0 + c];
    }
    for (int64_t c = 0; c < w; ++c) {
      for (int64_t r = 0; r < h; ++r) out[(c0 + c) * rows + r0 + r] = tile_buffer[r][c];
    }
  }
};

// The same when the last dim stays last: y's row r (of `inner` contiguous elements) is x's row at
// the offset its outer coordinates give. On CUDA one thread per element (f(row, col) through
// parallel_for_rows); on the CPU one call per row (copy_row), so the row's index math is done once
// and the columns are one contiguous copy (the flat version pays ndim divisions per element).
template <class T> struct PermuteRowsFunctor {
  const T* x;
  T* y;
  int outer_dims;
  int64_t inner;
  int64_t out_sizes[kMaxDims];
  int64_t in_strides[kMaxDims];
  KILN_HD int64_t offset(int64_t row) const {
    int64_t rest = row, at = 0;
    for (int d = outer_dims - 1; d >= 0; --d) {
      at += (rest % out_sizes[d]) * in_strides[d];
      rest /= out_sizes[d];
    }
    return at;
  }
  KILN_HD void operator()(int64_t row, int64_t col) const {
    y[row * inner + col] = x[offset(row) + col];
  }
  void copy_row(int64_t row) const {  // the CPU's form
    const T* from = x + offset(row);
    std::copy(from, from + inner, y + row * inner);
  }
};

// Called as f(row, col) by parallel_for_rows: no division per element on the CPU.
template <class T> struct BlockCopyFunctor {
  const T* src;
  T* dst;
  int64_t src_ld, src_col, dst_ld, dst_col;
  KILN_HD void operator()(int64_t r, int64_t c) const {
    dst[r * dst_ld + dst_col + c] = src[r * src_ld + src_col + c];
  }
};

template <class T> struct ExpandFunctor {
  const T* x;
  T* y;
  T scale;
  BroadcastIndexer index;
  KILN_HD void operator()(int64_t i) const { y[i] = scale * x[index.offset(0, i)]; }
};

template <class T> struct AxpyFunctor {
  T alpha;
  const T* x;
  T* y;
  KILN_HD void operator()(int64_t i) const { y[i] += alpha * x[i]; }
};

template <class T> struct ScaleFunctor {
  T* y;
  T factor;
  KILN_HD void operator()(int64_t i) const { y[i] *= factor; }
};

// Element i takes the first words of Philox block (offset + i): the same value on any device.
template <class T> struct UniformFunctor {
  T* y;
  uint64_t seed, offset;
  T low, span;
  KILN_HD void operator()(int64_t i) const {
    PhiloxOutput r = philox4x32(offset + static_cast<uint64_t>(i), 0, seed);
    T u =
        sizeof(T) == 4 ? T(philox_uniform_float(r.x[0])) : T(philox_uniform_double(r.x[0], r.x[1]));
    y[i] = low + math::mul_unfused(span, u);
  }
};

// Box-Muller on two uniforms of the element's own Philox block; u1 in (0, 1] keeps log finite.
template <class T> struct NormalFunctor {
  T* y;
  uint64_t seed, offset;
  T mean, stddev;
  KILN_HD void operator()(int64_t i) const {
    PhiloxOutput r = philox4x32(offset + static_cast<uint64_t>(i), 0, seed);
    double u1 = 1.0 - philox_uniform_double(r.x[0], r.x[1]);
    double u2 = philox_uniform_double(r.x[2], r.x[3]);
    double radius = ::sqrt(-2.0 * ::log(u1));
    y[i] = mean + stddev * static_cast<T>(radius * ::cos(6.283185307179586 * u2));
  }
};

}  // namespace

void fill(const Tensor& y, double value) {
  KILN_DISPATCH_ALL(y.dtype(), "fill", [&] {
    parallel_for(y.device(), y.numel(),
                 FillFunctor<scalar_t>{y.data<scalar_t>(), static_cast<scalar_t>(value)});
  });
}

void arange(const Tensor& y, double start, double step) {
  KILN_DISPATCH_ALL(y.dtype(), "arange", [&] {
    parallel_for(y.device(), y.numel(), ArangeFunctor<scalar_t>{y.data<scalar_t>(), start, step});
  });
}

void cast(const Tensor& x, const Tensor& y) {
  KILN_DISPATCH_ALL(x.dtype(), "cast", [&] {
    using In = scalar_t;
    KILN_DISPATCH_ALL(y.dtype(), "cast", [&] {
      parallel_for(x.device(), x.numel(),
                   CastFunctor<In, scalar_t>{x.data<In>(), y.data<scalar_t>()});
    });
  });
}

void permute(const Tensor& x, const std::vector<int>& order, const Tensor& y) {
  int ndim = static_cast<int>(x.dim());
  KILN_CHECK(ndim <= kMaxDims, "permute: rank ", ndim, " exceeds the maximum of ", kMaxDims);
  int64_t strides[kMaxDims];
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= x.size(d);
  }
  if (ndim >= 2 && order[ndim - 1] == ndim - 1) {
    int64_t inner = x.size(ndim - 1);
    KILN_DISPATCH_ALL(x.dtype(), "permute", [&] {
      PermuteRowsFunctor<scalar_t> f{
          x.data<scalar_t>(), y.data<scalar_t>(), ndim - 1, inner, {}, {}};
      for (int d = 0; d < ndim - 1; ++d) {
        f.out_sizes[d] = x.size(order[d]);
        f.in_strides[d] = strides[order[d]];
      }
      const int64_t rows = inner ? x.numel() / inner : 0;
      if (x.device().is_cpu()) {
        // One row copy per call: GCC kept the functor's per-element form scalar, with the
        // row's offset recomputed (divisions) at every element, 1.6 GB/s on [2, 320, 512].
        parallel_for_cpu(
            rows, [f](int64_t row) { f.copy_row(row); },
            std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(inner, 1)));
      } else {
        parallel_for_rows(x.device(), rows, inner, f);
      }
    });
    return;
  }
  bool swaps_last_two = ndim >= 2 && order[ndim - 1] == ndim - 2 && order[ndim - 2] == ndim - 1;
  for (int d = 0; d < ndim - 2; ++d) swaps_last_two = swaps_last_two && order[d] == d;
  if (swaps_last_two && x.device().is_cpu() && x.numel() > 0) {
    const int64_t rows = x.size(ndim - 2), cols = x.size(ndim - 1);
    const int64_t down = (rows + kTransposeTile - 1) / kTransposeTile,
                  across = (cols + kTransposeTile - 1) / kTransposeTile;
    KILN_DISPATCH_ALL(x.dtype(), "permute", [&] {
      TransposeTileFunctor<scalar_t> f{x.data<scalar_t>(), y.data<scalar_t>(), rows, cols, down,
                                       across};
      parallel_for_cpu(x.numel() / (rows * cols) * down * across, f,
                       std::max<int64_t>(1, kParallelGrain / (kTransposeTile * kTransposeTile)));
    });
    return;
  }
  KILN_DISPATCH_ALL(x.dtype(), "permute", [&] {
    PermuteFunctor<scalar_t> f{x.data<scalar_t>(), y.data<scalar_t>(), ndim, {}, {}};
    for (int d = 0; d < ndim; ++d) {
      f.out_sizes[d] = x.size(order[d]);
      f.in_strides[d] = strides[order[d]];
    }
    parallel_for(x.device(), x.numel(), f);
  });
}

void block_copy(const Tensor& src, int64_t src_ld, int64_t src_col, const Tensor& dst,
                int64_t dst_ld, int64_t dst_col, int64_t rows, int64_t cols) {
  KILN_DISPATCH_ALL(src.dtype(), "block_copy", [&] {
    parallel_for_rows(src.device(), rows, cols,
                      BlockCopyFunctor<scalar_t>{src.data<scalar_t>(), dst.data<scalar_t>(), src_ld,
                                                 src_col, dst_ld, dst_col});
  });
}

void expand(const Tensor& x, double scale, const Tensor& y) {
  BroadcastIndexer index = BroadcastIndexer::make(y.shape(), {&x.shape()});
  KILN_DISPATCH_FLOAT(x.dtype(), "expand", [&] {
    parallel_for(
        y.device(), y.numel(),
        ExpandFunctor<scalar_t>{x.data<scalar_t>(), y.data<scalar_t>(), scalar_t(scale), index});
  });
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  KILN_DISPATCH_FLOAT(y.dtype(), "add_", [&] {
    parallel_for(y.device(), y.numel(),
                 AxpyFunctor<scalar_t>{scalar_t(alpha), x.data<scalar_t>(), y.data<scalar_t>()});
  });
}

void scale(const Tensor& y, double factor) {
  KILN_DISPATCH_FLOAT(y.dtype(), "mul_", [&] {
    parallel_for(y.device(), y.numel(),
                 ScaleFunctor<scalar_t>{y.data<scalar_t>(), scalar_t(factor)});
  });
}

void uniform(const Tensor& y, uint64_t seed, uint64_t offset, double low, double high) {
  KILN_DISPATCH_FLOAT(y.dtype(), "uniform", [&] {
    parallel_for(y.device(), y.numel(),
                 UniformFunctor<scalar_t>{y.data<scalar_t>(), seed, offset, scalar_t(low),
                                          scalar_t(high - low)});
  });
}

void normal(const Tensor& y, uint64_t seed, uint64_t offset, double mean, double stddev) {
  KILN_DISPATCH_FLOAT(y.dtype(), "normal", [&] {
    parallel_for(y.device(), y.numel(),
                 NormalFunctor<scalar_t>{y.data<scalar_t>(), seed, offset, scalar_t(mean),
                                         scalar_t(stddev)});
  });
}

}  // namespace kiln::kernels
