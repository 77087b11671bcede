// Argument checks shared by lstm_layer and gru_layer.
#pragma once

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "kernels/copy.h"
#include "kernels/gemm.h"
#include "kernels/index.h"
#include "kernels/reduce.h"
#include "kernels/rnn_steps.h"

namespace kiln::rnn_detail {

// Row t of a [T, B, ...] tensor, as [B, ...] (a view); undefined stays undefined.
inline Tensor step(const Tensor& t, int64_t index) {
  if (!t.defined()) return t;
  return view_as_shape(view_rows(t, index, 1), Shape(t.shape().begin() + 1, t.shape().end()));
}

inline void check_state(const char* op, const char* name, const Tensor& state, const Tensor& x,
                        const RnnDims& d) {
  ops_detail::check_defined(op, state, name);
  ops_detail::check_compatible(op, x, state);
  KILN_CHECK(state.shape() == (Shape{d.batch, d.hidden}), op, ": ", name, " must be [B, H] = [",
             d.batch, ", ", d.hidden, "], got ", state.describe());
}

// x: [T, B, I], h0: [B, H], w_ih: [G*H, I], w_hh: [G*H, H], biases [G*H], mask: [T, B] or
// undefined.
inline RnnDims check_rnn_args(const char* op, int64_t gates, const Tensor& x, const Tensor& h0,
                              const RnnWeights& w, const Tensor& mask) {
  ops_detail::check_floating(op, x);
  KILN_CHECK(x.dim() == 3, op, ": x must be [T, B, I], got ", x.describe());
  RnnDims d{x.size(0), x.size(1), x.size(2), w.w_hh.defined() ? w.w_hh.size(-1) : 0};
  KILN_CHECK(d.steps > 0, op, ": x has no time steps: ", x.describe());
  for (const Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) {
    ops_detail::check_defined(op, *t, "weight");
    ops_detail::check_compatible(op, x, *t);
  }
  int64_t G = gates * d.hidden;
  KILN_CHECK(w.w_ih.shape() == (Shape{G, d.input}), op, ": weight_ih must be [", G, ", ", d.input,
             "], got ", w.w_ih.describe());
  KILN_CHECK(w.w_hh.shape() == (Shape{G, d.hidden}), op, ": weight_hh must be [", G, ", ", d.hidden,
             "], got ", w.w_hh.describe());
  KILN_CHECK(w.b_ih.shape() == Shape{G} && w.b_hh.shape() == Shape{G}, op, ": biases must be [", G,
             "], got ", w.b_ih.describe(), " and ", w.b_hh.describe());
  auto check_transposed = [&](const Tensor& t, const char* name, int64_t rows) {
    if (!t.defined()) return;
    ops_detail::check_compatible(op, x, t);
    KILN_CHECK(t.shape() == (Shape{rows, G}), op, ": ", name, " transposed must be [", rows, ", ",
               G, "], got ", t.describe());
  };
  check_transposed(w.w_ih_t, "weight_ih", d.input);
  check_transposed(w.w_hh_t, "weight_hh", d.hidden);
  check_state(op, "h0", h0, x, d);
  if (mask.defined()) {
    ops_detail::check_compatible(op, x, mask);
    KILN_CHECK(mask.shape() == (Shape{d.steps, d.batch}), op, ": mask must be [T, B] = [", d.steps,
               ", ", d.batch, "], got ", mask.describe());
  }
  return d;
}

// The real rows of a layer's T * B rows (step mask != 0), for the products over all of them: the
// input product of the forward, and dx = dG W_ih, dW_ih = dG^T x, dW_hh = dG^T h of the backward.
// A padded row's input gates are never read (its state passes through) and its gate gradients are
// 0, so on the CPU those products may run on the real rows alone, packed: a copy of each real
// row's operands (K + N floats) against 2 K N FLOPs a padded row saves. As for one step's
// recurrent product (kernels/rnn_steps.h), packing is done when at least 1/kPackPaddingShare of the
// rows are padded; otherwise, on CUDA (the mask is on the device), and when no row is real, every
// row is multiplied (active() is false). The large bench workloads pad about a fifth of the rows.
class RealRows {
 public:
  RealRows() = default;
  explicit RealRows(const Tensor& mask) {
    if (!mask.defined() || !mask.device().is_cpu()) return;
    std::vector<int64_t> real;
    auto collect = [&](const auto* step_mask) {  // read in place: a CPU tensor
      for (int64_t i = 0; i < mask.numel(); ++i) {
        if (step_mask[i] != 0) real.push_back(i);
      }
    };
    if (mask.dtype() == DType::f32) {
      collect(mask.data<float>());
    } else if (mask.dtype() == DType::f64) {
      collect(mask.data<double>());
    } else {
      return;  // the layers' dtypes are f32 and f64
    }
    const int64_t rows = mask.numel(), count = static_cast<int64_t>(real.size());
    if (count == 0 || (rows - count) * kernels::kPackPaddingShare < rows) return;
    // spread[i]: row i's place among the packed rows, or `count` (a row of zeros) when padded.
    std::vector<int64_t> spread(static_cast<size_t>(rows), count);
    for (int64_t i = 0; i < count; ++i) spread[static_cast<size_t>(real[i])] = i;
    count_ = count;
    index_ = from_vector(real, {count});
    spread_ = from_vector(spread, {rows});
  }
  bool active() const { return count_ > 0; }
  // [R, C]: the real rows of [T * B, C] rows, in order (the rows themselves when not active).
  Tensor pack(const Tensor& rows) const {
    if (!active()) return rows;
    Tensor packed = empty({count_, rows.size(1)}, rows.options());
    kernels::gather_rows(rows, index_, packed);
    return packed;
  }
  // out = a b (b transposed when trans_b), plus out itself when accumulate, for a = pack(rows of
  // [T * B, K]) and out: [T * B, N]. When active, out's padded rows are set to 0.
  void product(const Tensor& a, const Tensor& b, bool trans_b, bool accumulate,
               const Tensor& out) const {
    if (!active()) {
      kernels::gemm_2d(a, false, b, trans_b, accumulate ? 1.0 : 0.0, out);
      return;
    }
    Tensor packed = empty({count_ + 1, out.size(1)}, out.options());  // row count_: zeros
    Tensor real = view_rows(packed, 0, count_);
    kernels::fill(view_rows(packed, count_, 1), 0.0);
    if (accumulate) kernels::gather_rows(out, index_, real);
    kernels::gemm_2d(a, false, b, trans_b, accumulate ? 1.0 : 0.0, real);
    kernels::gather_rows(packed, spread_, out);
  }

 private:
  int64_t count_ = 0;
  Tensor index_;   // [R] the real rows, increasing
  Tensor spread_;  // [T * B] each row's packed row, R for a padded one
};

// The input gates of every step, [T, B, G]: x W_ih^T (from w.w_ih_t when given), plus x_gates
// when given: [B, G], the share of a fixed input part added at every step (see lstm_layer), or
// [T, B, G], each step's own (a caller's looked-up gates). Both layers start from these. With
// real_rows active, a padded row's gates are 0.
inline Tensor input_gates(const char* op, const Tensor& x, const RnnWeights& w,
                          const Tensor& x_gates, const RnnDims& d, const RealRows& real_rows) {
  const int64_t T = d.steps, B = d.batch, G = w.w_ih.size(0);
  if (x_gates.defined()) {
    ops_detail::check_compatible(op, x, x_gates);
    KILN_CHECK(x_gates.shape() == (Shape{B, G}) || x_gates.shape() == (Shape{T, B, G}), op,
               ": x_gates must be [B, G] = [", B, ", ", G, "] or [T, B, G] = [", T, ", ", B, ", ",
               G, "], got ", x_gates.describe());
    // No input to add to them, and one set of gates per step ([T, B, G], or a single step's
    // [B, G], a decoding step's looked-up gates): the gate kernels read x_gates itself (they never
    // write it).
    if (d.input == 0 && (x_gates.dim() == 3 || T == 1)) return view_as_shape(x_gates, {T, B, G});
  }
  Tensor xg = empty({T, B, G}, x.options());
  if (x_gates.defined() && x_gates.dim() == 3) {
    copy_(xg, x_gates);
  } else if (x_gates.defined()) {
    for (int64_t t = 0; t < T; ++t) copy_(step(xg, t), x_gates);
  }
  if (d.input == 0) {  // an input of no features (a decoder's looked-up gates): x_gates alone
    if (!x_gates.defined()) kernels::fill(xg, 0.0);
    return xg;
  }
  const bool transposed = w.w_ih_t.defined();
  real_rows.product(real_rows.pack(view_as_shape(x, {T * B, d.input})),
                    transposed ? w.w_ih_t : w.w_ih, !transposed, x_gates.defined(),
                    view_as_shape(xg, {T * B, G}));
  return xg;
}

// The gradient of x_gates from the input-gate gradient dgx [T, B, G]: dgx itself for per-step
// gates; for fixed gates, added at every step, dgx summed over the steps (padded steps contribute
// zeros): one column sum over T of [T, B*G].
inline Tensor x_gates_grad(const Tensor& dgx, bool per_step) {
  if (per_step) return dgx;
  const int64_t T = dgx.size(0), B = dgx.size(1), G = dgx.size(2);
  Tensor grad = empty({B, G}, dgx.options());
  kernels::sum_dim(view_as_shape(dgx, {T, B * G}), 0, 1.0, view_as_shape(grad, {B * G}));
  return grad;
}

}  // namespace kiln::rnn_detail
