// oneDNN's CPU RNN primitives (lstm_forward / lstm_backward, lbr_gru_forward / lbr_gru_backward),
// one layer, unidirectional, f32, as the CPU baseline kiln's fused layers are benchmarked against
// (bench_layers, BM_OnednnVsKiln); oneDNN is what PyTorch runs for CPU RNNs. Only built when CMake
// finds oneDNN (Debian's libdnnl-dev).
//
// The same math as kiln's layers, in another layout:
//   LSTM: oneDNN's gates i, f, c~, o are kiln's (PyTorch's) i, f, g, o; one bias per gate
//         (= b_ih + b_hh).
//   GRU:  kiln's GRU applies the reset gate to (W_hn h + b_hn), which is oneDNN's linear-before-
//         reset GRU (lbr_gru), not its plain gru. Its gates u, r, o are kiln's z, r, n; its bias
//         has 4 rows: u and r (b_ih + b_hh), o's input part (b_in) and o's recurrent part (b_hn).
// The weights are converted once, in the constructor (kiln's [G*H, I] is oneDNN's ldgoi with the
// gates reordered, then a reorder into the format the primitive picked); the timed calls run the
// primitives alone.
#pragma once

#include <cstdint>
#include <memory>

#include "kiln.h"

namespace kiln::bench {

class OnednnRnn {
 public:
  // x: [T, B, I]; h0, c0: [B, H] (c0 unused by the GRU); w in kiln's layout and gate order;
  // dy: [T, B, H], the gradient of y that backward() propagates. training: forward_training (keeps
  // the workspace backward() reads), else forward_inference.
  OnednnRnn(bool lstm, bool training, const Tensor& x, const Tensor& h0, const Tensor& c0,
            const RnnWeights& w, const Tensor& dy);
  ~OnednnRnn();
  void forward();
  // After forward(). Accumulates into the weight and bias gradients (oneDNN 2.x adds to them, as
  // kiln's backward adds to .grad()); zero_grad() clears them.
  void backward();
  void zero_grad();

  // Results in kiln's layout and gate order, for the check against kiln.
  Tensor y() const;    // [T, B, H]
  Tensor h_n() const;  // [B, H]
  Tensor c_n() const;  // [B, H] (LSTM)
  Tensor dx() const;   // [T, B, I]
  Tensor dh0() const;  // [B, H]
  Tensor dc0() const;  // [B, H] (LSTM)
  RnnWeights grads() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace kiln::bench
