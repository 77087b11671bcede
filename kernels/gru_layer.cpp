// The time loop of one GRU layer direction (kernels/gru_gates.h), on the CPU or CUDA: per step one
// recurrent GEMM hg = h_{t-1} W_hh^T and GruGatesForward over [B, H]; backward, per step in
// reverse, GruGatesBackward then dh += dgh_t W_hh. On the CPU the batch's rows may run as blocks,
// one per thread, each its own walk (kernels/rnn_steps.h), and a step's products skip its padded
// rows (RealRowsProduct). Pointers are computed here once per step, so a step costs the host two
// launches and nothing else. Bytes and FLOPs per step: the gate functors' header and
// kernels/rnn_steps.h (the GEMM).
#include "kernels/dispatch.h"
#include "kernels/gru_gates.h"
#include "kernels/rnn_steps.h"

namespace kiln::kernels {

namespace {

template <class T> void gru_forward_typed(const GruLayerForward& a) {
  const int64_t steps = a.xg.size(0), B = a.xg.size(1), H = a.h_n.size(1), G = 3 * H;
  const Device dev = a.xg.device();
  const StepOrder order{steps, a.reverse};
  GemmShape gemm_shape = recurrent_gemm(B, G, H, true);
  Tensor hg_buffer = empty({B, G}, a.xg.options()), packed;
  const T* w_hh_step = recurrent_weights<T>(a.w_hh, a.w_hh_t, packed, gemm_shape, steps);
  const T *xg = a.xg.data<T>(), *mask = a.mask.data<T>();
  T *gates = a.gates.defined() ? a.gates.data<T>() : nullptr, *h_in = a.h_in.data<T>(),
    *y = a.y.data<T>(), *hg = hg_buffer.data<T>();
  for_batch_blocks(dev, steps, gemm_shape, [&](const BatchBlock& block) {
    RealRowsProduct<T> recurrent_product(dev, a.xg.dtype(), block);
    for (int64_t s = 0; s < steps; ++s) {
      int64_t t = order.time(s), next = order.next_time(s);
      const T* h_prev = h_in + t * B * H;
      recurrent_product(mask + t * B, h_prev, w_hh_step, 0.0, hg);
      block_rows(dev, block, B, H,
                 GruGatesForward<T>{xg + t * B * G, hg, a.b_ih.data<T>(), a.b_hh.data<T>(), h_prev,
                                    mask + t * B, gates ? gates + t * B * 4 * H : nullptr,
                                    s == steps - 1 ? a.h_n.data<T>() : h_in + next * B * H,
                                    y + t * B * H, H});
    }
  });
}

template <class T> void gru_backward_typed(const GruLayerBackward& a) {
  const int64_t steps = a.gates.size(0), B = a.gates.size(1), H = a.dh.size(1), G = 3 * H;
  const Device dev = a.gates.device();
  const StepOrder order{steps, a.reverse};
  const GemmShape gemm_shape = recurrent_gemm(B, G, H, false);  // dh += dgh_t W_hh
  const T *gates = a.gates.data<T>(), *h_in = a.h_in.data<T>(), *mask = a.mask.data<T>(),
          *dy = a.dy.data<T>(), *w_hh = a.w_hh.data<T>();
  T *dh = a.dh.data<T>(), *dgx = a.dgx.data<T>(), *dgh = a.dgh.data<T>();
  for_batch_blocks(dev, steps, gemm_shape, [&](const BatchBlock& block) {
    RealRowsProduct<T> recurrent_product(dev, a.gates.dtype(), block);
    for (int64_t s = steps - 1; s >= 0; --s) {
      int64_t t = order.time(s);
      block_rows(dev, block, B, H,
                 GruGatesBackward<T>{gates + t * B * 4 * H, h_in + t * B * H, mask + t * B,
                                     dy + t * B * H, dh, dgx + t * B * G, dgh + t * B * G, H});
      recurrent_product(mask + t * B, dgh + t * B * G, w_hh, 1.0, dh);
    }
  });
}

}  // namespace

void gru_forward_steps(const GruLayerForward& layer) {
  KILN_DISPATCH_FLOAT(layer.xg.dtype(), "gru", [&] { gru_forward_typed<scalar_t>(layer); });
}
void gru_backward_steps(const GruLayerBackward& layer) {
  KILN_DISPATCH_FLOAT(layer.gates.dtype(), "gru_backward",
                      [&] { gru_backward_typed<scalar_t>(layer); });
}

}  // namespace kiln::kernels
