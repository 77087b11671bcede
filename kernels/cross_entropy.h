// Masked softmax cross-entropy with label smoothing, fused. See docs/cross_entropy.md.
//   logits: [N, V], targets: [N] (i64), mask: [N] (optional, same float dtype; 0 drops the row),
//   a row is also dropped when targets[n] == ignore_index. With smoothing eps,
//     lse_n  = log sum_c exp(x_nc)
//     loss_n = lse_n - (1 - eps) x_n,t - (eps / V) sum_c x_nc        (0 on dropped rows)
//     d loss_n / d x_nc = softmax_nc - (1 - eps) [c == t] - eps / V  (0 on dropped rows)
// Forward: one pass over each row (online max and sum of exponentials), writes loss_n, lse_n
// (= the only thing backward needs) and valid_n (1 or 0): bytes = N*V*sizeof(T) read + 3N written.
// Backward: one pass, grad_x = scale_n * (d loss_n / d x): N*V read + N*V written.
// The row math (log-sum-exp, which rows count, row scale, loss and gradient) is kernels/row_math.h.
#pragma once

#include "core/tensor.h"
#include "kernels/row_math.h"

namespace kiln::kernels {

struct CrossEntropyArgs {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

// loss_rows, lse, valid: [N] in logits' dtype.
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                           const CrossEntropyArgs& args, const Tensor& loss_rows, const Tensor& lse,
                           const Tensor& valid);
void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                                const CrossEntropyArgs& args, const Tensor& loss_rows,
                                const Tensor& lse, const Tensor& valid);
// grad_logits[n, c] = cross_entropy_row_scale(n) * d loss_n / d x_nc: grad_rows[n] when grad_rows
// has N entries (reduction none), else grad_rows[0] / divisor[0] (divisor: the number of valid
// rows for mean, a one for sum). Both are device scalars: no host sync.
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            const Tensor& valid, const CrossEntropyArgs& args,
                            const Tensor& grad_rows, const Tensor& divisor,
                            const Tensor& grad_logits);
void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                 const Tensor& valid, const CrossEntropyArgs& args,
                                 const Tensor& grad_rows, const Tensor& divisor,
                                 const Tensor& grad_logits);
// out[0] = total[0] / max(count[0], 1): the mean over valid rows, on the device.
void divide_by_count(const Tensor& total, const Tensor& count, const Tensor& out);

}  // namespace kiln::kernels
