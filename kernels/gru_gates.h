// The fused GRU gate kernels: one time step, element (b, j) of [B, H]; derivation in
// docs/rnn_backward.md. PyTorch's gate order r, z, n, with xg = x_t W_ih^T, hg = h_{t-1} W_hh^T:
//   r = s(xg_r + b_ir + hg_r + b_hr),  z = s(xg_z + b_iz + hg_z + b_hz)        xg, hg: [B, 3H]
//   hn = hg_n + b_hn,  n = tanh(xg_n + b_in + r hn),  h_t = (1 - z) n + z h_{t-1}
// Masked steps keep h and output 0. Forward writes gates r, z, n, hn ([B, 4H], =, saved), h_t, y_t
// (=): reads 2*3BH + BH + 6H, writes 4BH + 2BH elements per step. Backward reads gates, h_{t-1},
// dy_t, dh (7BH), writes dgx = (dr, dz, dn), dgh = (dr, dz, dn * r) ([B, 3H] each, =) and leaves in
// dh the direct part z * dh_t (7BH); the recurrent GEMM then adds dgh W_hh to dh.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

template <class T> struct GruGatesForward {
  const T* xg;      // [B, 3H]
  const T* hg;      // [B, 3H]
  const T* b_ih;    // [3H]
  const T* b_hh;    // [3H]
  const T* h_prev;  // [B, H]
  const T* mask;    // [B]: 1 for a real step, 0 for padding (never null)
  T* gates;         // [B, 4H]: r, z, n, hn; null when nothing is saved (no gradient)
  T* h_next;        // [B, H]
  T* y;             // [B, H]
  int64_t hidden;

  KILN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t H = hidden, idx = b * H + j;
    const T* xr = xg + b * 3 * H;
    const T* hr = hg + b * 3 * H;
    T r = math::gate_sigmoid(xr[j] + b_ih[j] + hr[j] + b_hh[j]);
    T z = math::gate_sigmoid(xr[H + j] + b_ih[H + j] + hr[H + j] + b_hh[H + j]);
    T hn = hr[2 * H + j] + b_hh[2 * H + j];
    T n = math::tanh(xr[2 * H + j] + b_ih[2 * H + j] + r * hn);
    if (gates) {
      T* gr = gates + b * 4 * H;
      gr[j] = r;
      gr[H + j] = z;
      gr[2 * H + j] = n;
      gr[3 * H + j] = hn;
    }
    bool keep = mask[b] != T(0);
    T h = (T(1) - z) * n + z * h_prev[idx];
    h_next[idx] = keep ? h : h_prev[idx];
    y[idx] = keep ? h : T(0);
  }
};

template <class T> struct GruGatesBackward {
  const T* gates;   // [B, 4H] saved r, z, n, hn
  const T* h_prev;  // [B, H]
  const T* mask;    // [B]: 1 for a real step, 0 for padding (never null)
  const T* dy;      // [B, H]
  T* dh;            // [B, H] in: dL/dh_t from later steps; out: the direct part of dL/dh_{t-1}
  T* dgx;           // [B, 3H]
  T* dgh;           // [B, 3H]
  int64_t hidden;

  KILN_HD void operator()(int64_t b, int64_t j) const {
    const int64_t H = hidden, idx = b * H + j;
    T* dxr = dgx + b * 3 * H;
    T* dhr = dgh + b * 3 * H;
    // A masked step passed the state through untouched: no gradient reaches its gates and dh
    // flows on unchanged. Selects, not a branch, so the CPU loop over j vectorizes.
    const bool keep = mask[b] != T(0);
    const T* gr = gates + b * 4 * H;
    T r = gr[j], z = gr[H + j], n = gr[2 * H + j], hn = gr[3 * H + j];
    T dh_in = dh[idx], h_old = h_prev[idx];  // loaded either way: a conditional load is a branch
    T dh_t = dh_in + dy[idx];
    T dn = keep ? dh_t * (T(1) - z) * (T(1) - n * n) : T(0);  // through tanh
    T dz = keep ? dh_t * (h_old - n) * z * (T(1) - z) : T(0);
    T dr = dn * hn * r * (T(1) - r);
    dxr[j] = dr;
    dxr[H + j] = dz;
    dxr[2 * H + j] = dn;
    dhr[j] = dr;
    dhr[H + j] = dz;
    dhr[2 * H + j] = dn * r;
    dh[idx] = keep ? dh_t * z : dh_in;
  }
};

// The time loops of one layer direction (kernels/gru_layer.cpp), as for the LSTM.
struct GruLayerForward {
  Tensor xg;                // [T, B, 3H]
  Tensor w_hh, b_ih, b_hh;  // [3H, H], [3H], [3H]
  Tensor mask;              // [T, B]: 1 for a real step, 0 for padding (all ones when unpadded)
  bool reverse = false;
  Tensor gates, h_in;  // [T, B, 4H] or undefined (no gradient), [T, B, H] (h0 at the first step)
  Tensor y, h_n;       // [T, B, H], [B, H]
  Tensor w_hh_t = {};  // optional W_hh^T [H, 3H] (RnnWeights::w_hh_t, kernels/rnn_steps.h)
};
void gru_forward_steps(const GruLayerForward& layer);

struct GruLayerBackward {
  Tensor gates, h_in, mask, dy, w_hh;
  bool reverse = false;
  Tensor dh;        // [B, H] in: gradient of h_n; out: of h0
  Tensor dgx, dgh;  // [T, B, 3H] out
};
void gru_backward_steps(const GruLayerBackward& layer);

}  // namespace kiln::kernels
