// The differentiable ops on tensors. Each records itself on the autograd tape when an input
// requires grad (and grad mode is on); forward and backward of an op sit together in
// autograd/ops/<family>.cpp.
#pragma once

#include <utility>
#include <vector>

#include "core/tensor.h"
#include "kernels/factories.h"

namespace kiln {

// ---- pointwise (autograd/ops/pointwise.cpp) ----
// Binary ops broadcast like NumPy: shapes align at the trailing dim; a size-1 or missing dim
// repeats.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a^b, a > 0 where b needs a gradient
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor add(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor rsub(double s, const Tensor& x);  // s - x
Tensor rdiv(double s, const Tensor& x);  // s / x

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& x, double s) { return add(x, s); }
inline Tensor operator+(double s, const Tensor& x) { return add(x, s); }
inline Tensor operator-(const Tensor& x, double s) { return add(x, -s); }
inline Tensor operator-(double s, const Tensor& x) { return rsub(s, x); }
inline Tensor operator*(const Tensor& x, double s) { return mul(x, s); }
inline Tensor operator*(double s, const Tensor& x) { return mul(x, s); }
inline Tensor operator/(const Tensor& x, double s) { return mul(x, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& x) { return rdiv(s, x); }

// ---- matrix products (autograd/ops/matmul.cpp) ----
// a: [M, K] or [B, M, K]; b: [K, N] or [B, K, N]; result [M, N] or [B, M, N]. With trans_a the
// stored a is [.., K, M] and used transposed (likewise trans_b), so no transposed copy is made.
// A 3-D a with a 2-D b multiplies every batch entry by the same b.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// ---- shapes and copies (autograd/ops/shape.cpp) ----
Tensor reshape(const Tensor& x, Shape shape);  // one size may be -1; shares storage
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);  // a copy
Tensor narrow(const Tensor& x, int64_t start, int64_t length);  // rows of dim 0; a view
Tensor select(const Tensor& x, int64_t index);  // row `index` of dim 0, dim dropped; a view
// Every row of dim 0 (dim dropped; views), as one node: backward writes all their gradients into
// one buffer, where T selects would each make a zero buffer of x's size.
std::vector<Tensor> unbind(const Tensor& x);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
Tensor clone(const Tensor& x);
Tensor to(const Tensor& x, Device device);
Tensor to(const Tensor& x, DType dtype);

// ---- reductions (autograd/ops/reduce.cpp) ----
Tensor sum(const Tensor& x);  // all elements, shape []
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim = -1, bool keepdim = false);     // dim must be the last
Tensor argmax(const Tensor& x, int64_t dim = -1, bool keepdim = false);  // i64, not differentiable
// The k largest of each last-dim row, largest first, ties to the lower index: (values [..., k],
// indices [..., k] i64); k is capped at the row's size. Not differentiable (x must need no grad).
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k);
// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- softmax (autograd/ops/softmax.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim = -1);  // dim must be the last
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// topk(log_softmax(x), k) over the last dim, the same values and indices bit for bit, without
// making the log-probabilities (a search's step ranks the next tokens this way). Not
// differentiable. Beside topk in autograd/ops/reduce.cpp, which shares its checks. With `bias`
// ([C], x's dtype and device), of x + bias, bit for bit, without writing the sum (a decoding
// step's logits, their bias left to this read).
std::pair<Tensor, Tensor> log_softmax_topk(const Tensor& x, int64_t k,
                                           const Tensor& bias = Tensor());

// ---- attention (autograd/ops/attention.cpp) ----
// One decoder step of additive (Bahdanau) attention, fused (kernels/attention.h):
//   scores[b, s] = sum_a v[a] tanh(key_proj[b, s, a] + query_proj[b, a]), -1e9 where
//   source_pad[b, s] != 0; weights = softmax over s; context[b] = sum_s weights[b, s] keys[b, s].
// key_proj [B, S, A], query_proj [B, A] (W_q query), v [A], keys [B, S, Hk], source_pad [B, S]
// (1 at padding, no gradient) -> (context [B, Hk], weights [B, S]). A fully padded row gets
// uniform weights.
std::pair<Tensor, Tensor> bahdanau_attention(const Tensor& key_proj, const Tensor& query_proj,
                                             const Tensor& v, const Tensor& keys,
                                             const Tensor& source_pad);

// ---- indexing and selection (autograd/ops/index.cpp) ----
// weight: [V, D...], index: any shape of i32/i64 in [0, V) -> index.shape + [D...]. Lookups of
// padding_idx (if >= 0) send no gradient to that row. host_index: a CPU copy of index's values
// when the caller has one (kernels::index_values): the range check and the gradient's counting
// sort read it instead of copying the index back from the device.
Tensor embedding(const Tensor& weight, const Tensor& index, int64_t padding_idx = -1,
                 const Tensor& host_index = Tensor());
// Inverted dropout: in training each element is kept with probability 1 - p and scaled by
// 1 / (1 - p). The mask comes from Philox (seed, offset) and is regenerated in backward, never
// stored; identical on CPU and CUDA for the same seed. Identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training);
// index: 1-D; rows of dim 0 of x.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// cond != 0 picks a, else b; cond, a, b broadcast together. cond may be any dtype.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// x where mask == 0, value where mask != 0; mask broadcasts to x.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

}  // namespace kiln

namespace kiln {

// ---- recurrent layers (autograd/ops/lstm.cpp, autograd/ops/gru.cpp) ----
// One layer, one direction, over a whole sequence, as ONE autograd op. Weights use PyTorch's
// layout and gate order (LSTM i, f, g, o; GRU r, z, n): w_ih [G*H, I], w_hh [G*H, H], b_* [G*H].
struct RnnWeights {
  Tensor w_ih, w_hh, b_ih, b_hh;
  // Optional, for many one-step calls on fixed weights (inference: Seq2Seq::prepare_decoding):
  // W_ih^T [I, G*H] and W_hh^T [H, G*H], contiguous copies made once by the caller, which the
  // products then read untransposed (oneDNN runs those about twice as fast on few rows,
  // kernels/rnn_steps.h). They must hold the transposes of w_ih and w_hh, which still take the
  // gradients.
  Tensor w_ih_t = {}, w_hh_t = {};
};
struct RnnDims {
  int64_t steps, batch, input, hidden;
};
struct RnnOutput {
  Tensor y;    // [T, B, H]; 0 at masked steps
  Tensor h_n;  // [B, H]: the state after the last unmasked step
  Tensor c_n;  // [B, H] (LSTM only)
};
// x: [T, B, I]; h0, c0: [B, H]; mask: [T, B] of 1 (real step) / 0 (padding: the state is kept),
// or undefined. reverse processes t = T-1 .. 0 (the backward half of a bidirectional layer).
// x_gates, if given, is added to every step's x W_ih^T: [B, G*H], the share of an input part that
// stays the same over the steps, computed once by the caller instead of once per step (its
// gradient is the input-gate gradient summed over the steps); or [T, B, G*H], each step's own (its
// gradient is the input-gate gradient). x may have no features (I = 0, weight_ih [G*H, 0]): then
// the input gates are x_gates alone (zeros without it), as in prepared decoding with the embedding
// tables (models/seq2seq/model.h, DecodingWeights::embedding_gates and encoder_embedding_gates).
RnnOutput lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& weights,
                     const Tensor& mask = Tensor(), bool reverse = false,
                     const Tensor& x_gates = Tensor());
RnnOutput gru_layer(const Tensor& x, const Tensor& h0, const RnnWeights& weights,
                    const Tensor& mask = Tensor(), bool reverse = false,
                    const Tensor& x_gates = Tensor());
// One step: x [B, I], h, c [B, H] -> (h', c') in h_n, c_n. The same gate kernels as the layers.
RnnOutput lstm_cell(const Tensor& x, const Tensor& h, const Tensor& c, const RnnWeights& weights);
RnnOutput gru_cell(const Tensor& x, const Tensor& h, const RnnWeights& weights);

}  // namespace kiln

namespace kiln {

// ---- losses (autograd/ops/loss.cpp) ----
enum class Reduction { mean, sum, none };
struct CrossEntropyOptions {
  int64_t ignore_index = -100;   // rows with this target count for nothing
  double label_smoothing = 0.0;  // eps: the target distribution is (1 - eps) one-hot + eps / V
  Reduction reduction = Reduction::mean;  // mean: over the rows that count (real tokens)
};
// Fused masked softmax cross-entropy. logits: [N, V]; targets: [N] (i64/i32); mask: [N] in the
// logits' dtype (0 drops a row) or undefined. Returns [] (mean, sum) or [N] (none; 0 on dropped
// rows).
// host_targets: a CPU copy of targets' values, read by the range check instead of targets.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options = {}, const Tensor& mask = Tensor(),
                     const Tensor& host_targets = Tensor());

}  // namespace kiln
