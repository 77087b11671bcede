// gru_layer: a whole GRU layer over a sequence as ONE autograd op, structured exactly like
// lstm_layer (autograd/ops/lstm.cpp): one input GEMM, per step one recurrent GEMM + one fused
// gate kernel; backward per step one fused kernel + one GEMM, then one GEMM per weight gradient.
// GRU needs two gate-gradient buffers because r multiplies the recurrent part of n only.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/rnn_checks.h"
#include "core/profiler.h"
#include "kernels/gemm.h"
#include "kernels/gru_gates.h"
#include "kernels/reduce.h"

namespace kiln {

using autograd::TensorList;
using rnn_detail::step;

RnnOutput gru_layer(const Tensor& x, const Tensor& h0, const RnnWeights& w, const Tensor& mask,
                    bool reverse, const Tensor& x_gates) {
  profiler::ProfileScope profile_scope("gru_layer", profiler::Category::op);
  RnnDims d = rnn_detail::check_rnn_args("gru", 3, x, h0, w, mask);
  const int64_t T = d.steps, B = d.batch, H = d.hidden, I = d.input;
  Options opt = x.options();
  // The gate kernels always read a step mask (a load behind `if (mask)` would keep their CPU
  // loops scalar): ones when nothing is padded.
  Tensor step_mask = mask.defined() ? mask : full({T, B}, 1.0, opt);

  // On the CPU, with enough padding, the products over every row run on the real ones alone.
  const rnn_detail::RealRows real_rows(mask);
  Tensor xg = rnn_detail::input_gates("gru", x, w, x_gates, d, real_rows);
  // The gates are saved for backward only: without a gradient (inference) they are not written.
  TensorList inputs{x, h0, w.w_ih, w.w_hh, w.b_ih, w.b_hh, x_gates};
  const bool saving = autograd::needs_grad(inputs);
  Tensor gates = saving ? empty({T, B, 4 * H}, opt) : Tensor(), h_in = empty({T, B, H}, opt);
  Tensor y = empty({T, B, H}, opt), h_n = empty({B, H}, opt);
  copy_(step(h_in, reverse ? T - 1 : 0), h0);
  kernels::gru_forward_steps(
      {xg, w.w_hh, w.b_ih, w.b_hh, step_mask, reverse, gates, h_in, y, h_n, w.w_hh_t});

  if (saving) {
    auto node = autograd::record("gru_layer", inputs, {y, h_n}, nullptr);
    bool need_x = node->needs_input_grad(0), need_w_ih = node->needs_input_grad(2),
         need_x_gates = node->needs_input_grad(6),
         per_step_gates = x_gates.defined() && x_gates.dim() == 3;
    node->backward_fn = [=, x = x.detach(), w_ih = w.w_ih.detach(), w_hh = w.w_hh.detach(),
                         mask = step_mask.detach(), gates = gates.detach(),
                         h_in = h_in.detach()](const TensorList& grads) {
      const Tensor& dy = grads[0];
      Tensor dh = copy_to(grads[1], grads[1].options());
      Tensor dgx = empty({T, B, 3 * H}, opt), dgh = empty({T, B, 3 * H}, opt);
      kernels::gru_backward_steps({gates, h_in, mask, dy, w_hh, reverse, dh, dgx, dgh});
      Tensor dgx2 = view_as_shape(dgx, {T * B, 3 * H}), dgh2 = view_as_shape(dgh, {T * B, 3 * H});
      Tensor dx, dw_ih, dw_hh = empty({3 * H, H}, opt), db_ih = empty({3 * H}, opt),
                        db_hh = empty({3 * H}, opt);
      // Padded rows' gate gradients are 0: the products read the real rows (packed when that
      // pays, RealRows), and dx is 0 on the padded ones.
      const Tensor dgx_real = need_x || need_w_ih ? real_rows.pack(dgx2) : Tensor();
      if (need_x) {
        dx = empty({T, B, I}, opt);
        real_rows.product(dgx_real, w_ih, false, false, view_as_shape(dx, {T * B, I}));
      }
      if (need_w_ih) {
        dw_ih = empty({3 * H, I}, opt);
        kernels::gemm_2d(dgx_real, true, real_rows.pack(view_as_shape(x, {T * B, I})), false, 0.0,
                         dw_ih);
      }
      kernels::gemm_2d(real_rows.pack(dgh2), true, real_rows.pack(view_as_shape(h_in, {T * B, H})),
                       false, 0.0, dw_hh);
      kernels::sum_dim(dgx2, 0, 1.0, db_ih);
      kernels::sum_dim(dgh2, 0, 1.0, db_hh);
      Tensor dx_gates = need_x_gates ? rnn_detail::x_gates_grad(dgx, per_step_gates) : Tensor();
      return TensorList{dx, dh, dw_ih, dw_hh, db_ih, db_hh, dx_gates};
    };
  }
  return {y, h_n, Tensor()};
}

RnnOutput gru_cell(const Tensor& x, const Tensor& h, const RnnWeights& w) {
  profiler::ProfileScope profile_scope("gru_cell", profiler::Category::op);
  KILN_CHECK(x.dim() == 2, "gru_cell: x must be [B, I], got ", x.describe());
  RnnOutput out = gru_layer(reshape(x, {1, x.size(0), x.size(1)}), h, w);
  return {Tensor(), out.h_n, Tensor()};
}

}  // namespace kiln
