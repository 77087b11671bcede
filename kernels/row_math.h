// Row math written once for softmax, log-softmax and cross-entropy, on the CPU and CUDA:
//   lse(x) = m + log sum_c exp(x_c - m),  m = max_c x_c          (x: one row [C])
//   a cross-entropy row n counts when targets[n] != ignore_index and mask[n] != 0; its loss and
//   gradient scale are the mean over counted rows or grad_rows[n] (docs/cross_entropy.md).
// Helpers only: no memory of their own. A contiguous row costs two reads of C values (max, then
// the sum of exponentials); a block reduction reads and writes blockDim values of shared memory.
#pragma once

#include "kernels/math.h"

namespace kiln::kernels {

// ---- log-sum-exp ------------------------------------------------------------------------------

// Online log-sum-exp: absorbs values one at a time or merges two partial states, so a row can be
// split across the threads of a block and combined in any tree.
template <class T> struct OnlineLogSumExp {
  T max;
  T sum;  // sum of exp(x - max)
  KILN_HD void add(T x) {
    if (x > max) {
      sum = sum * math::exp_nonpositive(max - x) + T(1);
      max = x;
    } else {
      sum += math::exp_nonpositive(x - max);
    }
  }
  KILN_HD void merge(const OnlineLogSumExp& other) {
    if (other.sum == T(0)) return;
    if (sum == T(0)) {
      *this = other;
      return;
    }
    T m = math::max(max, other.max);
    sum = sum * math::exp_nonpositive(max - m) + other.sum * math::exp_nonpositive(other.max - m);
    max = m;
  }
  KILN_HD T value() const { return max + math::log(sum); }
};

// A row's values as a row kernel reads them: x[c] (PlainRow), or x[c] + bias[c] (BiasedRow: logits
// whose bias add was left to this read, a decoding step's; each sum rounded once, as the add would
// have written it, so every result equals the one on the added row bit for bit).
template <class T> struct PlainRow {
  using value_type = T;
  const T* x;
  KILN_HD T operator()(int64_t c) const { return x[c]; }
};
template <class T> struct BiasedRow {
  using value_type = T;
  const T* x;
  const T* bias;
  KILN_HD T operator()(int64_t c) const { return x[c] + bias[c]; }
};

// sum_c exp(x(c) - m) over a row of n, as a SIMD reduction on the host (its second pass).
template <class Row>
KILN_HD inline typename Row::value_type row_exp_sum_of(const Row& x, int64_t n,
                                                       typename Row::value_type m) {
  using T = typename Row::value_type;
  T s = T(0);
  KILN_SIMD(reduction(+ : s))
  for (int64_t c = 0; c < n; ++c) s += math::exp_nonpositive(x(c) - m);
  return s;
}

// The state of a whole row x(0) .. x(n - 1), n >= 1, in two passes (the max, then the sum of
// exp(x - max)): each pass is a SIMD reduction on the host, so the order of its sums is by lanes.
// With kRowSum the second pass also returns sum_c x_c in *row_sum (cross-entropy's smoothing
// term) from the same read. One thread per row on CUDA (softmax's rows).
template <bool kRowSum = false, class Row>
KILN_HD inline OnlineLogSumExp<typename Row::value_type> row_log_sum_exp_of(
    const Row& x, int64_t n, typename Row::value_type* row_sum = nullptr) {
  using T = typename Row::value_type;
  T m = x(0);
  KILN_SIMD(reduction(max : m))
  for (int64_t c = 1; c < n; ++c) m = math::max(m, x(c));
  T s = T(0);
  if constexpr (kRowSum) {
    T total = T(0);
    KILN_SIMD(reduction(+ : s, total))
    for (int64_t c = 0; c < n; ++c) {
      s += math::exp_nonpositive(x(c) - m);
      total += x(c);
    }
    *row_sum = total;
  } else {
    s = row_exp_sum_of(x, n, m);
  }
  return {m, s};
}

// The same of a contiguous row x[0, n).
template <bool kRowSum = false, class T>
KILN_HD inline OnlineLogSumExp<T> row_log_sum_exp(const T* x, int64_t n, T* row_sum = nullptr) {
  return row_log_sum_exp_of<kRowSum>(PlainRow<T>{x}, n, row_sum);
}

// ---- top-k of a row ------------------------------------------------------------------------------

// The k largest of a row's values offered one at a time in column order, kept in v[0, k) and
// index[0, k), largest first; equal values keep their column order (ties to the lower column).
// One thread per row on CUDA (topk's and log_softmax_topk's rows).
template <class T> struct RowTopK {
  T* v;
  int64_t* index;
  int64_t k;
  int64_t kept = 0;
  KILN_HD void add(T value, int64_t c) {
    if (kept == k && !(value > v[k - 1])) return;
    int64_t slot = kept < k ? kept++ : k - 1;  // a free slot, or the smallest kept one's
    for (; slot > 0 && value > v[slot - 1]; --slot) {
      v[slot] = v[slot - 1];
      index[slot] = index[slot - 1];
    }
    v[slot] = value;
    index[slot] = c;
  }
  KILN_HD bool full() const { return kept == k; }
  // The same for values offered in any column order: an equal value ranks by its column.
  KILN_HD void add_any_order(T value, int64_t c) {
    auto before = [&](int64_t slot) {  // whether (value, c) ranks above kept slot `slot`
      return value > v[slot] || (value == v[slot] && c < index[slot]);
    };
    if (kept == k && !before(k - 1)) return;
    int64_t slot = kept < k ? kept++ : k - 1;
    for (; slot > 0 && before(slot - 1); --slot) {
      v[slot] = v[slot - 1];
      index[slot] = index[slot - 1];
    }
    v[slot] = value;
    index[slot] = c;
  }
};

// Whether any of value(c0) .. value(c1 - 1) is above `threshold` (a NaN never is): their maximum,
// taken in SIMD lanes on the CPU.
template <class T, class Values>
KILN_HD bool any_above(T threshold, int64_t c0, int64_t c1, const Values& value) {
  T block_max = threshold;
  KILN_SIMD(reduction(max : block_max))
  for (int64_t c = c0; c < c1; ++c) {
    const T x = value(c);
    block_max = x > block_max ? x : block_max;
  }
  return block_max > threshold;
}

// Offers value(c) for every column c of a row of n to `top`, in column order. Once top is full, a
// block of columns none of whose values is above the smallest kept one changes nothing, so for
// most of a long row only block maxima are taken and add is skipped: first of 64 columns (four
// SIMD vectors per horizontal reduction), then, in a 64 that has a candidate, of each 16. On random
// logits this third pass was about half of log_softmax_topk's time (perf annotate); the 64-column
// check timed 1598-1753 against 1634-1923 us on BM_LogSoftmaxTopK, within this host's noise. The
// kept values and columns are those of offering every column.
template <class T, class Values> KILN_HD void offer_row(RowTopK<T>& top, int64_t n, Values value) {
  constexpr int64_t kBlock = 16, kSpan = 4 * kBlock;
  for (int64_t s0 = 0; s0 < n; s0 += kSpan) {
    const int64_t s1 = s0 + kSpan < n ? s0 + kSpan : n;
    if (top.full() && !any_above(top.v[top.k - 1], s0, s1, value)) continue;
    for (int64_t c0 = s0; c0 < s1; c0 += kBlock) {
      const int64_t c1 = c0 + kBlock < s1 ? c0 + kBlock : s1;
      if (top.full() && !any_above(top.v[top.k - 1], c0, c1, value)) continue;
      for (int64_t c = c0; c < c1; ++c) top.add(value(c), c);
    }
  }
}

// ---- cross-entropy rows -------------------------------------------------------------------------

// Whether row n counts: its target is not the ignore index and its mask (optional) is not 0.
template <class T>
KILN_HD inline bool cross_entropy_keeps_row(int64_t target, int64_t ignore_index, const T* mask,
                                            int64_t n) {
  return target != ignore_index && (!mask || mask[n] != T(0));
}

// The mean over counted rows: total / max(count, 1), so a batch of padding gives 0, not NaN.
template <class T> KILN_HD inline T mean_over_count(T total, T count) {
  return total / math::max(count, T(1));
}

// The gradient scale of row n: grad_rows[n] when grad_rows has N entries (reduction none), else
// grad_rows[0] / divisor[0] (divisor: the number of counted rows for mean, a one for sum).
template <class T>
KILN_HD inline T cross_entropy_row_scale(const T* grad_rows, const T* divisor, int64_t n) {
  return divisor ? mean_over_count(grad_rows[0], divisor[0]) : grad_rows[n];
}

// loss_n from the row's log-sum-exp, the target logit and the sum of the row's logits, with label
// smoothing eps: lse - (1 - eps) x_t - (eps / V) sum_c x_c.
template <class T>
KILN_HD inline T cross_entropy_row_loss(T lse, T target_logit, T row_sum, T eps, int64_t classes) {
  return lse - (T(1) - eps) * target_logit - eps / T(classes) * row_sum;
}

// d loss_n / d x_nc = softmax_nc - (1 - eps) [c == t] - eps / V, times scale.
template <class T>
KILN_HD inline T cross_entropy_grad(T x, T lse, bool is_target, T eps, int64_t classes, T scale) {
  T p = math::exp_nonpositive(x - lse);
  return scale * (p - (is_target ? T(1) - eps : T(0)) - eps / T(classes));
}

// ---- CUDA block reduction -----------------------------------------------------------------------

#ifdef __CUDACC__
// Combines one value per thread of a kThreads-thread block in a fixed tree in shared memory
// (shared: kThreads entries): the same order on every run, no atomics (deterministic, STYLE 9).
// combine(a, b) returns the merge of two partials. Every thread gets the total.
template <int kThreads, class V, class Combine>
__device__ V block_reduce(V value, V* shared, Combine combine) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      shared[threadIdx.x] = combine(shared[threadIdx.x], shared[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  V total = shared[0];
  __syncthreads();  // shared may be reused right after
  return total;
}

template <int kThreads, class T> __device__ T block_sum(T value, T* shared) {
  return block_reduce<kThreads>(value, shared, [](T a, T b) { return a + b; });
}
#endif

}  // namespace kiln::kernels
