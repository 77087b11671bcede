// Additive (Bahdanau) attention for one decoder step, fused: per sentence b (derivation in
// docs/attention_backward.md), with p = key_proj [B, S, A], q = W_q query [B, A], v [A],
// k = keys [B, S, Hk], pad [B, S] (!= 0 at padding):
//   forward:  e_s = pad_s ? -1e9 : sum_a v_a tanh(p_sa + q_a),  w = softmax(e),  c = sum_s w_s k_s
//   backward: g_s = dw_s + dc . k_s,  de_s = pad_s ? 0 : w_s (g_s - sum_r w_r g_r),
//             dp_sa = de_s v_a (1 - t_sa^2) with t = tanh(p + q) recomputed (nothing [B, S, A] is
//             saved),  dq_a = sum_s dp_sa,  dv_a = sum_b sum_s de_s t_sa,  dk_s = w_s dc
// Forward writes weights [B, S] (=) and context [B, Hk] (zeroed, then += over s); backward
// writes d_key_proj, d_keys (=), d_query (zeroed, += over s) and d_v (per-sentence partials
// [B, A] zeroed and += over s, then a column sum: no atomics).
// Bytes (x sizeof(T)): forward reads BSA + BSHk + BS + BA + A, writes BS + BHk; backward reads
// BSA + BSHk + 3BS + BHk + BA + A, writes BSA + BSHk + 3BA + A (+ 2BS of scratch). FLOPs:
// forward 3BSA + 2BSHk + BSA tanh + ~4BS; backward 8BSA + 3BSHk + BSA tanh + ~4BS. The BSA terms
// assume no padding: a padded key's row of key_proj is neither read nor put through tanh.
#pragma once

#include "core/tensor.h"
#include "kernels/row_math.h"

namespace kiln::kernels {

// The score of a padded source position: what masked_fill(scores, pad, -1e9) gave before, so a
// fully padded sentence gets uniform weights (as the taped composition did), never NaN.
constexpr double kAttentionMaskedScore = -1e9;

template <class T> struct BahdanauForward {
  const T* key_proj;  // [B, S, A] W_k keys
  const T* query;     // [B, A] W_q query
  const T* v;         // [A]
  const T* keys;      // [B, S, Hk]
  const T* pad;       // [B, S]
  T* weights;         // [B, S] out; holds the scores until normalize()
  T* context;         // [B, Hk] out
  int64_t S, A, Hk;

  // e_s of sentence b, masked. (Members are copied to locals so the host compiler sees no
  // aliasing between the pointers and the functor and vectorizes the row.)
  KILN_HD T score(int64_t b, int64_t s) const {
    if (pad[b * S + s] != T(0)) return T(kAttentionMaskedScore);  // no tanh row for padding
    const T *p = key_proj + (b * S + s) * A, *q = query + b * A, *vv = v;
    T e = T(0);
    KILN_SIMD(reduction(+ : e))
    for (int64_t a = 0; a < A; ++a) e += vv[a] * math::tanh(p[a] + q[a]);
    return e;
  }
  // The scores of row b -> softmax, in place (max subtracted: stable).
  KILN_HD void normalize(int64_t b) const {
    T* w = weights + b * S;
    const OnlineLogSumExp<T> lse = row_log_sum_exp(w, S);
    const T inv = T(1) / lse.sum;
    for (int64_t s = 0; s < S; ++s) w[s] = math::exp_nonpositive(w[s] - lse.max) * inv;
  }
  // context[b, h] += w_s k_sh (the row starts at 0): the CPU loops s then h (contiguous), a CUDA
  // thread owns an h and loops s.
  KILN_HD void add_key(int64_t b, int64_t s, int64_t h) const {
    context[b * Hk + h] += weights[b * S + s] * keys[(b * S + s) * Hk + h];
  }
  // One sentence on one thread (the CPU path; CUDA splits the same calls over a block).
  KILN_HD void operator()(int64_t b) const {
    for (int64_t s = 0; s < S; ++s) weights[b * S + s] = score(b, s);
    normalize(b);
    for (int64_t h = 0; h < Hk; ++h) context[b * Hk + h] = T(0);
    for (int64_t s = 0; s < S; ++s) {
      KILN_SIMD()
      for (int64_t h = 0; h < Hk; ++h) add_key(b, s, h);
    }
  }
};

template <class T> struct BahdanauBackward {
  const T* key_proj;   // [B, S, A]
  const T* query;      // [B, A]
  const T* v;          // [A]
  const T* keys;       // [B, S, Hk]
  const T* pad;        // [B, S]
  const T* weights;    // [B, S] the forward's output
  const T* d_context;  // [B, Hk]
  const T* d_weights;  // [B, S]
  T* d_score;          // [B, S] out: g, then de (scratch)
  T* d_key_proj;       // [B, S, A] out
  T* d_query;          // [B, A] out
  T* d_v_rows;         // [B, A] out: sentence b's share of dv (summed over b by the launcher)
  T* d_keys;           // [B, S, Hk] out
  int64_t S, A, Hk;

  KILN_HD bool padded(int64_t b, int64_t s) const { return pad[b * S + s] != T(0); }
  // g_s: the gradient reaching w_s directly and through the context.
  KILN_HD T weight_grad(int64_t b, int64_t s) const {
    const T *k = keys + (b * S + s) * Hk, *dc = d_context + b * Hk;
    T g = T(0);
    KILN_SIMD(reduction(+ : g))
    for (int64_t h = 0; h < Hk; ++h) g += dc[h] * k[h];
    return d_weights[b * S + s] + g;
  }
  // g -> de for row b, in place: softmax backward, then 0 where masked_fill replaced the score.
  KILN_HD void score_grads(int64_t b) const {
    T* g = d_score + b * S;
    const T* w = weights + b * S;
    T dot = T(0);
    for (int64_t s = 0; s < S; ++s) dot += w[s] * g[s];
    for (int64_t s = 0; s < S; ++s) g[s] = padded(b, s) ? T(0) : w[s] * (g[s] - dot);
  }
  // Element (s, a) of sentence b: dp_sa, and its terms of dq_a and of row b's dv_a (both rows
  // start at 0). The CPU loops s then a (contiguous); a CUDA thread owns an a and loops s. A
  // padded key has de_s = 0: its dp row is 0, it adds nothing, and its tanh is skipped.
  KILN_HD void padded_projection_grad(int64_t b, int64_t s, int64_t a) const {
    d_key_proj[(b * S + s) * A + a] = T(0);
  }
  KILN_HD void projection_grad(int64_t b, int64_t s, int64_t a) const {
    const int64_t i = (b * S + s) * A + a;
    const T de = d_score[b * S + s];
    const T t = math::tanh(key_proj[i] + query[b * A + a]);  // recomputed, not saved
    const T dp = de * v[a] * (T(1) - t * t);
    d_key_proj[i] = dp;
    d_query[b * A + a] += dp;
    d_v_rows[b * A + a] += de * t;
  }
  KILN_HD void key_grad(int64_t b, int64_t s, int64_t h) const {
    d_keys[(b * S + s) * Hk + h] = weights[b * S + s] * d_context[b * Hk + h];
  }
  // One sentence on one thread (the CPU path).
  KILN_HD void operator()(int64_t b) const {
    for (int64_t s = 0; s < S; ++s) d_score[b * S + s] = weight_grad(b, s);
    score_grads(b);
    for (int64_t a = 0; a < A; ++a) d_query[b * A + a] = d_v_rows[b * A + a] = T(0);
    for (int64_t s = 0; s < S; ++s) {
      if (padded(b, s)) {
        KILN_SIMD()
        for (int64_t a = 0; a < A; ++a) padded_projection_grad(b, s, a);
      } else {
        KILN_SIMD()
        for (int64_t a = 0; a < A; ++a) projection_grad(b, s, a);
      }
      KILN_SIMD()
      for (int64_t h = 0; h < Hk; ++h) key_grad(b, s, h);
    }
  }
};

// The launchers: one sentence per thread on the CPU (parallel_for over B), one block per sentence
// on CUDA. All tensors contiguous, of one dtype (f32 or f64) and device; shapes as above.
struct BahdanauInputs {
  Tensor key_proj, query, v, keys, pad;
};
void bahdanau_forward(const BahdanauInputs& in, const Tensor& weights, const Tensor& context);

struct BahdanauGrads {
  Tensor d_key_proj, d_query, d_v, d_keys;  // out, shaped like key_proj, query, v, keys
};
void bahdanau_backward(const BahdanauInputs& in, const Tensor& weights, const Tensor& d_context,
                       const Tensor& d_weights, const BahdanauGrads& out);

}  // namespace kiln::kernels
