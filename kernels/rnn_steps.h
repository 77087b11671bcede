// What the LSTM and GRU time loops (kernels/lstm_layer.cpp, kernels/gru_layer.cpp) share: the
// order in which a layer direction visits its T steps, and the shape of the per-step recurrent
// GEMM hg = h_{t-1} W_hh^T ([B, H] x [G*H, H]^T -> [B, G*H], 2 B G H^2 FLOPs) or, backward,
// dh += dgates_t W_hh ([B, G*H] x [G*H, H] -> [B, H], the same FLOPs, accumulated with +=).
// Host code only: the loops launch one GEMM and one gate kernel per step.
#pragma once

#include <cstdint>

#include "kernels/copy.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"

namespace kiln::kernels {

// Step s of T in processing order -> time index; and the time index processed next.
struct StepOrder {
  int64_t steps;
  bool reverse;
  int64_t time(int64_t s) const { return reverse ? steps - 1 - s : s; }
  int64_t next_time(int64_t s) const { return reverse ? steps - 2 - s : s + 1; }
};

// hg = h W_hh^T (transpose_w, forward) or dh += dg W_hh (backward) for one step, with
// gates_width = G * H.
inline GemmShape recurrent_gemm(int64_t batch, int64_t gates_width, int64_t hidden,
                                bool transpose_w) {
  GemmShape g;
  g.trans_b = transpose_w;
  g.m = batch;
  g.n = transpose_w ? gates_width : hidden;
  g.k = transpose_w ? hidden : gates_width;
  return g;
}

// The forward GEMM's weight operand: on the CPU, W_hh^T [H, G*H] transposed once per layer call
// into `packed`, so each step is a plain (untransposed) product, when
//  - the product is small: libxsmm's JIT kernels take no transposed B (kSmallGemmVolume), or
//  - it goes to oneDNN and the call runs several steps: oneDNN's sgemm re-packs a transposed B at
//    every call, which halves its rate on these few-row products (64 x 1536 x 512: 150-165
//    GFLOP/s against 305-340 untransposed, bench/RESULTS.md), and the one transpose is repaid by
//    the second step.
// Otherwise W_hh itself, which OpenBLAS and cuBLAS read transposed as fast. A caller's own W_hh^T
// (`w_hh_t`, RnnWeights::w_hh_t) is used as it is. Sets `shape` to match.
template <class T>
const T* recurrent_weights(const Tensor& w_hh, const Tensor& w_hh_t, Tensor& packed,
                           GemmShape& shape, int64_t steps) {
  if (w_hh_t.defined()) {
    shape.trans_b = false;
    return w_hh_t.data<T>();
  }
  GemmShape untransposed = shape;
  untransposed.trans_b = false;
  const bool small = shape.m * shape.n * shape.k <= kSmallGemmVolume;
  const bool to_onednn =
      steps > 1 && cpu_gemm_library(w_hh.dtype(), untransposed) == CpuGemmLibrary::onednn;
  if (w_hh.device().is_cuda() || !(small || to_onednn)) return w_hh.data<T>();
  packed = empty({w_hh.size(1), w_hh.size(0)}, w_hh.options());
  permute(w_hh, {1, 0}, packed);
  shape.trans_b = false;
  return packed.data<T>();
}

}  // namespace kiln::kernels
