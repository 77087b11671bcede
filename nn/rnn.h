// Recurrent layers: LSTM and GRU (stacked, optionally bidirectional, dropout between layers,
// variable-length batches) and the single-step LSTMCell / GRUCell. Every layer and direction runs
// as one fused autograd op (autograd/ops/lstm.cpp, gru.cpp). Names, shapes, gate order and the
// default init uniform(+-1/sqrt(H)) equal PyTorch's: weight_ih_l{k}[_reverse], weight_hh_l{k}...,
// bias_ih_l{k}..., bias_hh_l{k}...; cells: weight_ih, weight_hh, bias_ih, bias_hh.
// Sequences are time-major: x [T, B, I] -> y [T, B, D*H], h_n (and c_n) [L*D, B, H].
#pragma once

#include "nn/module.h"

namespace kiln::nn {

enum class CellType { lstm, gru };

struct RnnOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  double dropout = 0.0;  // on the outputs of every layer but the last, in training
  bool bidirectional = false;
  Options tensor_options = {};
};

struct RnnState {
  Tensor y;    // [T, B, D*H], 0 at padded steps
  Tensor h_n;  // [L*D, B, H]: each sequence's state after its last real step
  Tensor c_n;  // [L*D, B, H] (LSTM)
};

// lengths [B] (i32/i64, any device) -> mask [T, B] of 1 where t < lengths[b], in `options`.
// host_lengths: a CPU copy of the lengths when the caller has one, read instead of lengths.
Tensor sequence_mask(const Tensor& lengths, int64_t steps, Options options,
                     const Tensor& host_lengths = Tensor());

class Recurrent : public Module {
 public:
  Recurrent(CellType cell, RnnOptions options);
  // h0, c0: [L*D, B, H] or undefined for zeros (c0 only for LSTM); lengths: [B] or undefined.
  // step_mask: sequence_mask(lengths, T, x's options) when the caller has made it already (one
  // mask per batch, read from the host once), else undefined.
  // fixed_input [B, F]: the last F of layer 0's input features when they are the same at every
  // step (d2l's decoder reads [embedding; context] with a fixed context); x then holds the first
  // input_size - F. The result equals forward(cat({x, fixed_input repeated over T}, -1)), but the
  // fixed part's share of the input projection is computed once per sequence, not once per step.
  // prepared: every layer and direction's weights as weights() gives them, with transposed copies
  // a caller made once for many calls (RnnWeights::w_hh_t, as inference keeps them:
  // seq2seq::DecodingWeights); undefined: this module's own.
  // input_gates: layer 0's input products x W_ih^T, one [T, B, G] per direction, when the caller
  // has them already (inference looks up each token's, seq2seq::DecodingWeights::
  // encoder_embedding_gates); x is then [T, B, 0], layer 0 reads no W_ih, and the gates take its
  // gradient. Not with fixed_input.
  RnnState forward(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor(),
                   const Tensor& lengths = Tensor(), const Tensor& step_mask = Tensor(),
                   const Tensor& fixed_input = Tensor(),
                   const std::vector<RnnWeights>* prepared = nullptr,
                   const std::vector<Tensor>& input_gates = {}) const;
  const RnnOptions& options() const { return options_; }
  CellType cell() const { return cell_; }
  int64_t num_directions() const { return options_.bidirectional ? 2 : 1; }
  // Layer `layer`, direction `direction`'s four tensors (for callers that run the layers one by
  // one).
  const RnnWeights& weights(int64_t layer, int64_t direction = 0) const {
    return weights_.at(layer * num_directions() + direction);
  }

 private:
  CellType cell_;
  RnnOptions options_;
  std::vector<RnnWeights> weights_;  // [layer * D + direction]
};

class LSTM : public Recurrent {
 public:
  explicit LSTM(RnnOptions options) : Recurrent(CellType::lstm, options) {}
};

class GRU : public Recurrent {
 public:
  explicit GRU(RnnOptions options) : Recurrent(CellType::gru, options) {}
};

// One step. h, c: [B, H] or undefined for zeros. Returns h_n (and c_n for LSTMCell).
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, Options options = {});
  RnnState forward(const Tensor& x, const Tensor& h = Tensor(), const Tensor& c = Tensor()) const;
  RnnWeights weights;
};

class GRUCell : public Module {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, Options options = {});
  RnnState forward(const Tensor& x, const Tensor& h = Tensor()) const;
  RnnWeights weights;
};

}  // namespace kiln::nn
