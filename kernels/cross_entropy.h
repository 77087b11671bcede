// Masked softmax cross-entropy with label smoothing, fused. See docs/cross_entropy.md.
//   logits: [N, V], targets: [N] (i64), mask: [N] (optional, same float dtype; 0 drops the row),
//   a row is also dropped when targets[n] == ignore_index. With smoothing eps,
//     lse_n  = log sum_c exp(x_nc)
//     loss_n = lse_n - (1 - eps) x_n,t - (eps / V) sum_c x_nc        (0 on dropped rows)
//     d loss_n / d x_nc = softmax_nc - (1 - eps) [c == t] - eps / V  (0 on dropped rows)
// Forward: one pass over each row (online max and sum of exponentials), writes loss_n, lse_n
// (= the only thing backward needs) and valid_n (1 or 0): bytes = N*V*sizeof(T) read + 3N written.
// Backward: one pass, grad_x = scale_n * (d loss_n / d x): N*V read + N*V written.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

// Online log-sum-exp: absorbs values one at a time or merges two partial states, so a row can be
// split across the threads of a block and combined in any tree.
template <class T> struct OnlineLogSumExp {
  T max;
  T sum;  // sum of exp(x - max)
  KILN_HD void add(T x) {
    if (x > max) {
      sum = sum * math::exp(max - x) + T(1);
      max = x;
    } else {
      sum += math::exp(x - max);
    }
  }
  KILN_HD void merge(const OnlineLogSumExp& other) {
    if (other.sum == T(0)) return;
    if (sum == T(0)) {
      *this = other;
      return;
    }
    T m = math::max(max, other.max);
    sum = sum * math::exp(max - m) + other.sum * math::exp(other.max - m);
    max = m;
  }
  KILN_HD T value() const { return max + math::log(sum); }
};

// loss_n from the row's log-sum-exp, the target logit and the sum of the row's logits.
template <class T> KILN_HD inline T cross_entropy_row_loss(T lse, T target_logit, T row_sum, T eps, int64_t classes) {
  return lse - (T(1) - eps) * target_logit - eps / T(classes) * row_sum;
}

// d loss_n / d x_nc, times scale.
template <class T> KILN_HD inline T cross_entropy_grad(T x, T lse, bool is_target, T eps, int64_t classes, T scale) {
  T p = math::exp(x - lse);
  return scale * (p - (is_target ? T(1) - eps : T(0)) - eps / T(classes));
}

struct CrossEntropyArgs {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

// loss_rows, lse, valid: [N] in logits' dtype.
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                           const CrossEntropyArgs& args, const Tensor& loss_rows, const Tensor& lse,
                           const Tensor& valid);
void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                                const CrossEntropyArgs& args, const Tensor& loss_rows, const Tensor& lse,
                                const Tensor& valid);
// grad_logits[n, c] = row_scale(n) * d loss_n / d x_nc, where row_scale(n) = grad_rows[n] when
// grad_rows has N entries (reduction none), else grad_rows[0] / divisor[0] (divisor: the number of
// valid rows for mean, a one for sum). Both are device scalars: no host sync.
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& valid,
                            const CrossEntropyArgs& args, const Tensor& grad_rows, const Tensor& divisor,
                            const Tensor& grad_logits);
void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& valid,
                                 const CrossEntropyArgs& args, const Tensor& grad_rows, const Tensor& divisor,
                                 const Tensor& grad_logits);
// out[0] = total[0] / max(count[0], 1): the mean over valid rows, on the device.
void divide_by_count(const Tensor& total, const Tensor& count, const Tensor& out);

}  // namespace kiln::kernels
