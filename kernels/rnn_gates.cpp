// Launchers of the LSTM and GRU gate functors (kernels/lstm_gates.h, kernels/gru_gates.h): one
// parallel_for over [B, H] per time step, on the CPU or CUDA.
#include "kernels/dispatch.h"
#include "kernels/gru_gates.h"
#include "kernels/lstm_gates.h"

namespace kiln::kernels {

namespace {
template <class T> const T* optional(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
}  // namespace

void lstm_gates_forward(const LstmStep& s) {
  int64_t hidden = s.h_prev.size(-1);
  KILN_DISPATCH_FLOAT(s.xg.dtype(), "lstm", [&] {
    using T = scalar_t;
    parallel_for(s.xg.device(), s.h_prev.numel(),
                 LstmGatesForward<T>{s.xg.data<T>(), s.hg.data<T>(), s.b_ih.data<T>(), s.b_hh.data<T>(),
                                     s.h_prev.data<T>(), s.c_prev.data<T>(), optional<T>(s.mask), s.gates.data<T>(),
                                     s.h_next.data<T>(), s.c_next.data<T>(), s.y.data<T>(), hidden},
                 /*grain=*/4096);
  });
}

void lstm_gates_backward(const LstmStepGrad& s) {
  int64_t hidden = s.dh.size(-1);
  KILN_DISPATCH_FLOAT(s.gates.dtype(), "lstm_backward", [&] {
    using T = scalar_t;
    parallel_for(s.gates.device(), s.dh.numel(),
                 LstmGatesBackward<T>{s.gates.data<T>(), s.c_prev.data<T>(), optional<T>(s.mask), s.dy.data<T>(),
                                      s.dh.data<T>(), s.dc.data<T>(), s.dgates.data<T>(), hidden},
                 /*grain=*/4096);
  });
}

void gru_gates_forward(const GruStep& s) {
  int64_t hidden = s.h_prev.size(-1);
  KILN_DISPATCH_FLOAT(s.xg.dtype(), "gru", [&] {
    using T = scalar_t;
    parallel_for(s.xg.device(), s.h_prev.numel(),
                 GruGatesForward<T>{s.xg.data<T>(), s.hg.data<T>(), s.b_ih.data<T>(), s.b_hh.data<T>(),
                                    s.h_prev.data<T>(), optional<T>(s.mask), s.gates.data<T>(), s.h_next.data<T>(),
                                    s.y.data<T>(), hidden},
                 /*grain=*/4096);
  });
}

void gru_gates_backward(const GruStepGrad& s) {
  int64_t hidden = s.dh.size(-1);
  KILN_DISPATCH_FLOAT(s.gates.dtype(), "gru_backward", [&] {
    using T = scalar_t;
    parallel_for(s.gates.device(), s.dh.numel(),
                 GruGatesBackward<T>{s.gates.data<T>(), s.h_prev.data<T>(), optional<T>(s.mask), s.dy.data<T>(),
                                     s.dh.data<T>(), s.dgx.data<T>(), s.dgh.data<T>(), hidden},
                 /*grain=*/4096);
  });
}

}  // namespace kiln::kernels
