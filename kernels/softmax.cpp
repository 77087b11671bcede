// The row functors of kernels/softmax.h: one row per thread on the CPU (OpenMP over rows, SIMD
// inside the row) and on CUDA. The row's max and sum of exponentials come from row_log_sum_exp
// (kernels/row_math.h), shared with cross-entropy. Shapes and bytes: kernels/softmax.h.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>

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
// top-k (on the host, for a few of many columns, only the blocks that can hold them), so values
// and order equal the two ops'. With a bias, of the row x + bias (BiasedRow,
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
    RowTopK<T> top{values + row * k, indices + row * k, k};
#ifndef __CUDA_ARCH__
    if (k * kRankBlock * 4 <= cols && cols <= kRankBlock * kMaxRankBlocks &&
        rank_best_blocks(top, value)) {
      return;
    }
#endif
    const OnlineLogSumExp<T> lse = row_log_sum_exp_of(value, cols);
    offer_row(top, cols, LogProbabilities<Row>{value, lse.max, math::log(lse.sum)});
  }
  template <class Row> struct LogProbabilities {  // as SoftmaxForwardFunctor writes them
    Row value;
    T m, log_s;
    KILN_HD T of(T v) const { return v - m - log_s; }
    KILN_HD T operator()(int64_t c) const { return of(value(c)); }
  };

#ifndef __CUDA_ARCH__  // host code only (CUDA ranks a row on one thread, with offer_row)
  // The host's blocks of columns, for rows of up to kMaxRankBlocks of them (32,768 columns) and at
  // least 4 k.
  static constexpr int64_t kRankBlock = 64, kMaxRankBlocks = 512;

  // A few of many columns, on the host: two passes over the row and a few of its blocks, where
  // offer_row makes a third pass. The first pass takes the max of each block of kRankBlock columns
  // (the row's max is theirs); the second, the sum. A log-probability is a monotone function of its
  // value, so a block's max gives its best, and the k blocks of largest maxima hold the k best
  // values: they are offered first, then any other block whose best ranks at or above the k-th
  // kept (a value that rounds to the same log-probability wins on a lower column). The values,
  // their ranks and their columns are offer_row's. BM_LogSoftmaxTopK (320 x 8,000, k = 10) on one
  // thread, 4 interleaved runs: 3075-3130 us (one run 4658) against 3357-3685. False (nothing
  // offered) for a row whose max is 0 or whose max or sum is not finite (NaN, inf): a max's sign of
  // zero or a NaN among the values depends on the order of the max, which offer_row's path keeps.
  template <class Row> bool rank_best_blocks(RowTopK<T>& top, const Row& value) const {
    const int64_t blocks = (cols + kRankBlock - 1) / kRankBlock;
    T block_max[kMaxRankBlocks];
    T m = value(0);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kRankBlock, c1 = std::min(c0 + kRankBlock, cols);
      T bm = value(c0);
      KILN_SIMD(reduction(max : bm))
      for (int64_t c = c0 + 1; c < c1; ++c) bm = math::max(bm, value(c));
      block_max[b] = bm;
      m = math::max(m, bm);
    }
    const T log_s = math::log(row_exp_sum_of(value, cols, m));
    if (m == T(0) || !std::isfinite(m) || !std::isfinite(log_s)) return false;
    const LogProbabilities<Row> log_p{value, m, log_s};
    auto offer_block = [&](int64_t b) {
      const int64_t c0 = b * kRankBlock, c1 = std::min(c0 + kRankBlock, cols);
      for (int64_t c = c0; c < c1; ++c) top.add_any_order(log_p(c), c);
    };
    // The k blocks of largest maxima (ties to the lower block), largest first: a top-k of the
    // block maxima.
    T best_max[kMaxRankBlocks];
    int64_t best[kMaxRankBlocks];
    RowTopK<T> best_blocks{best_max, best, k};
    for (int64_t b = 0; b < blocks; ++b) best_blocks.add(block_max[b], b);
    bool offered[kMaxRankBlocks] = {};
    for (int64_t i = 0; i < best_blocks.kept; ++i) {
      offer_block(best[i]);
      offered[best[i]] = true;
    }
    for (int64_t b = 0; b < blocks; ++b) {
      if (!offered[b] && !(log_p.of(block_max[b]) < top.v[k - 1])) offer_block(b);
    }
    return true;
  }
#endif
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
