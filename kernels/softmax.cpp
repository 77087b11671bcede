// The row functors of kernels/softmax.h: one row per thread on the CPU (OpenMP over rows, SIMD
// inside the row) and on CUDA. The row's max and sum of exponentials come from row_log_sum_exp
// (kernels/row_math.h), shared with cross-entropy. Shapes and bytes: kernels/softmax.h.
#include "kernels/softmax.h"

#include <algorithm>

#include "kernels/dispatch.h"
#include "kernels/row_math.h"

namespace kiln::kernels {

namespace {

// The rows of a softmax run on several threads from kParallelRowElements values in all (about
// 35 us of exponentials on one thread here, against a fork/join near 1 us), not from a fixed row
// count: with 64 rows whatever their width, a greedy step's ranking of 64 rows of 8,000 logits took
// 240 us on two threads and of 63 rows 450 us on one, while attention's 64 rows of 12 scores were
// split in two.
constexpr int64_t kParallelRowElements = 32768;
int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, (kParallelRowElements + cols - 1) / std::max<int64_t>(cols, 1));
}

template <class T> struct SoftmaxForwardFunctor {
  const T* x;
  T* y;
  int64_t cols;
  bool log;
  KILN_HD void operator()(int64_t row) const {
    const T* in = x + row * cols;
    T* out = y + row * cols;
    // Each loop vectorizes on the CPU (KILN_SIMD); the reductions' order is then by lanes.
    const OnlineLogSumExp<T> lse = row_log_sum_exp(in, cols);
    const T m = lse.max, s = lse.sum;
    if (log) {
      T log_s = math::log(s);
      KILN_SIMD()
      for (int64_t c = 0; c < cols; ++c) out[c] = in[c] - m - log_s;
    } else {
      T inv = T(1) / s;
      KILN_SIMD()
      for (int64_t c = 0; c < cols; ++c) out[c] = math::exp_nonpositive(in[c] - m) * inv;
    }
  }
};

template <class T> struct SoftmaxBackwardFunctor {
  const T* y;
  const T* grad_y;
  T* grad_x;
  int64_t cols;
  bool log;
  KILN_HD void operator()(int64_t row) const {
    const T* yr = y + row * cols;
    const T* gr = grad_y + row * cols;
    T* out = grad_x + row * cols;
    T dot = T(0);
    if (log) {
      KILN_SIMD(reduction(+ : dot))
      for (int64_t c = 0; c < cols; ++c) dot += gr[c];
      KILN_SIMD()
      for (int64_t c = 0; c < cols; ++c) out[c] = gr[c] - math::exp_nonpositive(yr[c]) * dot;
    } else {
      KILN_SIMD(reduction(+ : dot))
      for (int64_t c = 0; c < cols; ++c) dot += gr[c] * yr[c];
      KILN_SIMD()
      for (int64_t c = 0; c < cols; ++c) out[c] = yr[c] * (gr[c] - dot);
    }
  }
};

// topk(log_softmax(row), k) without writing the row's log-probabilities: the same two passes for
// the max and the sum, then each value computed as the forward computes it and offered to the
// top-k, so values and order equal the two ops'. With a bias, of the row x + bias (BiasedRow,
// kernels/row_math.h).
template <class T> struct LogSoftmaxTopKFunctor {
  const T* x;
  const T* bias;  // [cols] or null
  T* values;
  int64_t* indices;
  int64_t cols, k;
  KILN_HD void operator()(int64_t row) const {
    const T* in = x + row * cols;
    if (bias) {
      rank(row, BiasedRow<T>{in, bias});
    } else {
      rank(row, PlainRow<T>{in});
    }
  }
  template <class Row> KILN_HD void rank(int64_t row, const Row& value) const {
    const OnlineLogSumExp<T> lse = row_log_sum_exp_of(value, cols);
    RowTopK<T> top{values + row * k, indices + row * k, k};
    offer_row(top, cols, LogProbabilities<Row>{value, lse.max, math::log(lse.sum)});
  }
  template <class Row> struct LogProbabilities {  // as SoftmaxForwardFunctor writes them
    Row value;
    T m, log_s;
    KILN_HD T operator()(int64_t c) const { return value(c) - m - log_s; }
  };
};

}  // namespace

void log_softmax_top_k(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices,
                       const Tensor& bias) {
  int64_t cols = x.size(-1), rows = x.numel() / cols;
  KILN_DISPATCH_FLOAT(x.dtype(), "log_softmax_topk", [&] {
    parallel_for(x.device(), rows,
                 LogSoftmaxTopKFunctor<scalar_t>{
                     x.data<scalar_t>(), bias.defined() ? bias.data<scalar_t>() : nullptr,
                     values.data<scalar_t>(), indices.data<int64_t>(), cols, k},
                 row_grain(cols));
  });
}

void softmax_forward(const Tensor& x, const Tensor& y, bool log) {
  int64_t cols = x.size(-1), rows = x.numel() / cols;
  KILN_DISPATCH_FLOAT(x.dtype(), log ? "log_softmax" : "softmax", [&] {
    parallel_for(x.device(), rows,
                 SoftmaxForwardFunctor<scalar_t>{x.data<scalar_t>(), y.data<scalar_t>(), cols, log},
                 row_grain(cols));
  });
}

void softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x, bool log) {
  int64_t cols = y.size(-1), rows = y.numel() / cols;
  KILN_DISPATCH_FLOAT(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&] {
    parallel_for(y.device(), rows,
                 SoftmaxBackwardFunctor<scalar_t>{y.data<scalar_t>(), grad_y.data<scalar_t>(),
                                                  grad_x.data<scalar_t>(), cols, log},
                 row_grain(cols));
  });
}

}  // namespace kiln::kernels
