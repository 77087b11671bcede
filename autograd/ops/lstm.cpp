// lstm_layer: a whole LSTM layer over a sequence as ONE autograd op (DESIGN.md fast path).
// Forward: one GEMM for the input projection of all steps, then per step one recurrent GEMM and
// one fused gate kernel. Backward walks the steps in reverse with one fused gate-backward kernel
// and one GEMM (dh += dgates W_hh) per step, then one GEMM each for dx, dW_ih, dW_hh and one
// column sum for the biases. Saved: the gates and the state entering every step. Derivation:
// docs/rnn_backward.md.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/rnn_checks.h"
#include "core/profiler.h"
#include "kernels/gemm.h"
#include "kernels/lstm_gates.h"
#include "kernels/reduce.h"

namespace kiln {

using autograd::TensorList;
using rnn_detail::step;

RnnOutput lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
                     const Tensor& mask, bool reverse, const Tensor& x_gates) {
  profiler::ProfileScope profile_scope("lstm_layer", profiler::Category::op);
  RnnDims d = rnn_detail::check_rnn_args("lstm", 4, x, h0, w, mask);
  rnn_detail::check_state("lstm", "c0", c0, x, d);
  const int64_t T = d.steps, B = d.batch, H = d.hidden, I = d.input;
  Options opt = x.options();
  // The gate kernels always read a step mask (a load behind `if (mask)` would keep their CPU
  // loops scalar): ones when nothing is padded.
  Tensor step_mask = mask.defined() ? mask : full({T, B}, 1.0, opt);

  // On the CPU, with enough padding, the products over every row run on the real ones alone.
  const rnn_detail::RealRows real_rows(mask);
  Tensor xg = rnn_detail::input_gates("lstm", x, w, x_gates, d, real_rows);
  // The gates are saved for backward only: without a gradient (inference) they are not written.
  TensorList inputs{x, h0, c0, w.w_ih, w.w_hh, w.b_ih, w.b_hh, x_gates};
  const bool saving = autograd::needs_grad(inputs);
  Tensor gates = saving ? empty({T, B, 4 * H}, opt) : Tensor(), h_in = empty({T, B, H}, opt),
         c_in = empty({T, B, H}, opt);
  Tensor y = empty({T, B, H}, opt), h_n = empty({B, H}, opt), c_n = empty({B, H}, opt);
  int64_t first = reverse ? T - 1 : 0;
  copy_(step(h_in, first), h0);
  copy_(step(c_in, first), c0);
  kernels::lstm_forward_steps(
      {xg, w.w_hh, w.b_ih, w.b_hh, step_mask, reverse, gates, h_in, c_in, y, h_n, c_n, w.w_hh_t});

  if (saving) {
    auto node = autograd::record("lstm_layer", inputs, {y, h_n, c_n}, nullptr);
    bool need_x = node->needs_input_grad(0), need_w_ih = node->needs_input_grad(3),
         need_x_gates = node->needs_input_grad(7),
         per_step_gates = x_gates.defined() && x_gates.dim() == 3;
    node->backward_fn = [=, x = x.detach(), w_ih = w.w_ih.detach(), w_hh = w.w_hh.detach(),
                         mask = step_mask.detach(), gates = gates.detach(), h_in = h_in.detach(),
                         c_in = c_in.detach()](const TensorList& grads) {
      const Tensor& dy = grads[0];
      Tensor dh = copy_to(grads[1], grads[1].options()), dc = copy_to(grads[2], grads[2].options());
      Tensor dgates = empty({T, B, 4 * H}, opt);
      kernels::lstm_backward_steps({gates, c_in, mask, dy, w_hh, reverse, dh, dc, dgates});
      Tensor dg2 = view_as_shape(dgates, {T * B, 4 * H});
      Tensor dx, dw_ih, dw_hh = empty({4 * H, H}, opt), db = empty({4 * H}, opt);
      // Padded rows' gate gradients are 0: the products read the real rows (packed when that
      // pays, RealRows), and dx is 0 on the padded ones.
      const Tensor dg_real = real_rows.pack(dg2);
      if (need_x) {
        dx = empty({T, B, I}, opt);
        real_rows.product(dg_real, w_ih, false, false, view_as_shape(dx, {T * B, I}));
      }
      if (need_w_ih) {
        dw_ih = empty({4 * H, I}, opt);
        kernels::gemm_2d(dg_real, true, real_rows.pack(view_as_shape(x, {T * B, I})), false, 0.0,
                         dw_ih);
      }
      kernels::gemm_2d(dg_real, true, real_rows.pack(view_as_shape(h_in, {T * B, H})), false, 0.0,
                       dw_hh);
      kernels::sum_dim(dg2, 0, 1.0, db);
      return TensorList{dx,
                        dh,
                        dc,
                        dw_ih,
                        dw_hh,
                        db,
                        copy_to(db, db.options()),
                        need_x_gates ? rnn_detail::x_gates_grad(dgates, per_step_gates) : Tensor()};
    };
  }
  return {y, h_n, c_n};
}

RnnOutput lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c, const RnnWeights& w) {
  profiler::ProfileScope profile_scope("lstm_cell", profiler::Category::op);
  KILN_CHECK(x.dim() == 2, "lstm_cell: x must be [B, I], got ", x.describe());
  RnnOutput out = lstm_layer(reshape(x, {1, x.size(0), x.size(1)}), h, c, w);
  return {Tensor(), out.h_n, out.c_n};
}

}  // namespace kiln
