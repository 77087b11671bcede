// The fused LSTM gate kernels: one time step of a layer, element (b, j) of [B, H]; derivation in
// docs/rnn_backward.md. PyTorch's gate order i, f, g, o:
//   a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh                   xg: [B, 4H], hg: [B, 4H]
//   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o)
//   c_t = f c_{t-1} + i g,  h_t = o tanh(c_t),  y_t = h_t
// A step whose mask is 0 (a padded position) keeps the state (h_t = h_{t-1}, c_t = c_{t-1}) and
// outputs y_t = 0. Forward writes gates (=, saved for backward), c_t, h_t, y_t. Bytes per step:
// reads 2*4BH + 2BH + 8H, writes 4BH + 3BH. Backward reads gates, c_{t-1}, dy_t and updates dh,
// dc in place (dh is left holding only the carry; the recurrent GEMM adds dgates W_hh to it),
// writes dgates (=).
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

template <class T> struct LstmGatesForward {
  const T* xg;      // [B, 4H] input projection of this step (no bias)
  const T* hg;      // [B, 4H] recurrent projection (no bias)
  const T* b_ih;    // [4H]
  const T* b_hh;    // [4H]
  const T* h_prev;  // [B, H]
  const T* c_prev;  // [B, H]
  const T* mask;    // [B]: 1 for a real step, 0 for padding (never null)
  T* gates;         // [B, 4H] activated i, f, g, o; null when nothing is saved (no gradient)
  T* h_next;        // [B, H]
  T* c_next;        // [B, H]
  T* y;             // [B, H]
  int64_t hidden;

  KILN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t H = hidden, idx = b * H + j;
    const T* xr = xg + b * 4 * H;
    const T* hr = hg + b * 4 * H;
    T i = math::gate_sigmoid(xr[j] + hr[j] + b_ih[j] + b_hh[j]);
    T f = math::gate_sigmoid(xr[H + j] + hr[H + j] + b_ih[H + j] + b_hh[H + j]);
    T g = math::tanh(xr[2 * H + j] + hr[2 * H + j] + b_ih[2 * H + j] + b_hh[2 * H + j]);
    T o = math::gate_sigmoid(xr[3 * H + j] + hr[3 * H + j] + b_ih[3 * H + j] + b_hh[3 * H + j]);
    if (gates) {
      T* gr = gates + b * 4 * H;
      gr[j] = i;
      gr[H + j] = f;
      gr[2 * H + j] = g;
      gr[3 * H + j] = o;
    }
    bool keep = mask[b] != T(0);
    T c_old = c_prev[idx],
      h_old = h_prev[idx];  // loaded either way: a conditional load is a branch
    T c = f * c_old + i * g;
    T h = o * math::tanh(c);
    c_next[idx] = keep ? c : c_old;
    h_next[idx] = keep ? h : h_old;
    y[idx] = keep ? h : T(0);
  }
};

template <class T> struct LstmGatesBackward {
  const T* gates;   // [B, 4H] saved i, f, g, o
  const T* c_prev;  // [B, H]
  const T* mask;    // [B]: 1 for a real step, 0 for padding (never null)
  const T* dy;      // [B, H]
  T* dh;            // [B, H] in: dL/dh_t from later steps; out: the carry part of dL/dh_{t-1}
  T* dc;            // [B, H] in: dL/dc_t; out: dL/dc_{t-1}
  T* dgates;        // [B, 4H] out: dL/da for i, f, g, o
  int64_t hidden;

  KILN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t H = hidden, idx = b * H + j;
    T* dgr = dgates + b * 4 * H;
    // A masked step passed the state through untouched and y_t = 0 has no path back: its gates
    // get no gradient and dh, dc flow on unchanged. Selects, not a branch, so the CPU loop over j
    // vectorizes.
    const bool keep = mask[b] != T(0);
    const T* gr = gates + b * 4 * H;
    T i = gr[j], f = gr[H + j], g = gr[2 * H + j], o = gr[3 * H + j];
    // Every load happens either way (a conditional load is a branch); selects pick the results.
    T c_old = c_prev[idx], dh_in = dh[idx], dc_in = dc[idx], dy_t = dy[idx];
    T c = f * c_old + i * g;  // recomputed: cheaper than saving every c_t
    T tc = math::tanh(c);
    T dh_t = keep ? dh_in + dy_t : T(0);
    T dc_t = keep ? dc_in + dh_t * o * (T(1) - tc * tc) : T(0);
    dgr[j] = dc_t * g * i * (T(1) - i);
    dgr[H + j] = dc_t * c_old * f * (T(1) - f);
    dgr[2 * H + j] = dc_t * i * (T(1) - g * g);
    dgr[3 * H + j] = dh_t * tc * o * (T(1) - o);
    dc[idx] = keep ? dc_t * f : dc_in;
    dh[idx] = keep ? T(0) : dh_in;
  }
};

// The time loop of one layer direction (kernels/lstm_layer.cpp): per step one recurrent GEMM
// hg = h_prev W_hh^T and one gate kernel, on raw pointers (no per-step tensor objects).
// Time-indexed buffers: step t reads h_in[t], c_in[t] (the state entering it) and writes the state
// entering the next step processed (t + 1, or t - 1 when reverse), or h_n, c_n after the last one.
struct LstmLayerForward {
  Tensor xg;                // [T, B, 4H] input projections, no bias
  Tensor w_hh, b_ih, b_hh;  // [4H, H], [4H], [4H]
  Tensor mask;              // [T, B]: 1 for a real step, 0 for padding (all ones when unpadded)
  bool reverse = false;
  // [T, B, 4H] or undefined (no gradient); [T, B, H] x 2: h_in/c_in hold h0/c0 at the first step
  Tensor gates, h_in, c_in;
  Tensor y, h_n, c_n;  // [T, B, H], [B, H], [B, H]
  Tensor w_hh_t = {};  // optional W_hh^T [H, 4H] (RnnWeights::w_hh_t, kernels/rnn_steps.h)
};
void lstm_forward_steps(const LstmLayerForward& layer);

// The reverse walk: per step one fused gate-backward kernel and one GEMM dh += dgates_t W_hh.
struct LstmLayerBackward {
  Tensor gates, c_in, mask, dy, w_hh;
  bool reverse = false;
  Tensor dh, dc;  // [B, H] in: gradients of h_n, c_n; out: of h0, c0
  Tensor dgates;  // [T, B, 4H] out
};
void lstm_backward_steps(const LstmLayerBackward& layer);

}  // namespace kiln::kernels
