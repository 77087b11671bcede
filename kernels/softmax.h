// Softmax and log-softmax along the last dim, one row per thread (CPU and CUDA share the row math).
//   forward:  y[r, c] = exp(x[r, c] - m_r) / s_r, or (x[r, c] - m_r) - log s_r for log-softmax,
//             with m_r = max_c x[r, c] and s_r = sum_c exp(x[r, c] - m_r)
//   backward: softmax      grad_x = y * (grad_y - sum_c grad_y * y)
//             log-softmax  grad_x = grad_y - exp(y) * sum_c grad_y
// x: [rows, C]. Bytes: forward reads x twice (max, sum) and writes y; backward reads y and grad_y
// twice and writes grad_x. All outputs are written with =.
#pragma once

#include "core/tensor.h"

namespace kiln::kernels {

void softmax_forward(const Tensor& x, const Tensor& y, bool log);
// The k largest log-probabilities of each row and their columns (values [rows, k], indices i64),
// as topk(log_softmax(x)) gives them, bit for bit, without the [rows, C] log-probabilities: a
// beam search's step reads each row of logits three times and writes 2 k values. With `bias`
// ([C]), of x + bias, the same bits as on the added rows, without the pass that adds it.
void log_softmax_top_k(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices,
                       const Tensor& bias = Tensor());
void softmax_backward(const Tensor& y, const Tensor& grad_y, const Tensor& grad_x, bool log);

}  // namespace kiln::kernels
