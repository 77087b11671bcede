#include "nn/rnn.h"

#include <cmath>

#include "kernels/factories.h"
#include "kernels/index.h"

namespace kiln::nn {

namespace {

int64_t gate_count(CellType cell) { return cell == CellType::lstm ? 4 : 3; }

// Registers the four tensors of one layer and direction through `register_fn` (the owner's
// register_parameter), in PyTorch's order and init.
template <class Register>
RnnWeights make_weights(CellType cell, int64_t input, int64_t hidden, const std::string& suffix,
                        Options options, Register&& register_fn) {
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  int64_t g = gate_count(cell) * hidden;
  return {register_fn("weight_ih" + suffix, init_uniform({g, input}, -bound, bound, options)),
          register_fn("weight_hh" + suffix, init_uniform({g, hidden}, -bound, bound, options)),
          register_fn("bias_ih" + suffix, init_uniform({g}, -bound, bound, options)),
          register_fn("bias_hh" + suffix, init_uniform({g}, -bound, bound, options))};
}

Tensor zeros_state(const Tensor& x, int64_t batch, int64_t hidden) {
  return zeros({batch, hidden}, x.options());
}

}  // namespace

Tensor sequence_mask(const Tensor& lengths, int64_t steps, Options options,
                     const Tensor& host_lengths) {
  KILN_CHECK(lengths.dim() == 1 && !is_floating(lengths.dtype()),
             "sequence_mask: lengths must be a 1-D integer tensor, got ", lengths.describe());
  std::vector<int64_t> host = kernels::index_values(lengths, host_lengths, "sequence_mask");
  int64_t batch = static_cast<int64_t>(host.size());
  for (int64_t b = 0; b < batch; ++b) {
    KILN_CHECK(host[b] >= 0 && host[b] <= steps, "sequence_mask: length ", host[b], " of sequence ",
               b, " is outside [0, ", steps, "]");
  }
  KILN_CHECK(is_floating(options.dtype), "sequence_mask: the mask is a float tensor, asked for ",
             dtype_name(options.dtype));
  // Made by a kernel from the lengths on the mask's device: lengths already there need no upload,
  // so a CUDA graph can capture it.
  Tensor mask = empty({steps, batch}, options);
  kernels::sequence_mask(lengths.device() == options.device ? lengths
                                                            : copy_to(lengths, {lengths.dtype(), options.device}),
                         mask);
  return mask;
}

Recurrent::Recurrent(CellType cell, RnnOptions options) : cell_(cell), options_(options) {
  const char* name = cell == CellType::lstm ? "LSTM" : "GRU";
  KILN_CHECK(options.input_size > 0 && options.hidden_size > 0 && options.num_layers > 0, name,
             ": input_size, hidden_size and num_layers must be positive, got ", options.input_size,
             ", ", options.hidden_size, ", ", options.num_layers);
  KILN_CHECK(options.dropout >= 0 && options.dropout < 1, name, ": dropout must be in [0, 1), got ",
             options.dropout);
  auto reg = [this](const std::string& n, Tensor t) { return register_parameter(n, t); };
  for (int64_t layer = 0; layer < options.num_layers; ++layer) {
    int64_t input = layer == 0 ? options.input_size : options.hidden_size * num_directions();
    for (int64_t dir = 0; dir < num_directions(); ++dir) {
      std::string suffix = "_l" + std::to_string(layer) + (dir ? "_reverse" : "");
      weights_.push_back(
          make_weights(cell, input, options.hidden_size, suffix, options.tensor_options, reg));
    }
  }
}

RnnState Recurrent::forward(const Tensor& x, const Tensor& h0, const Tensor& c0,
                            const Tensor& lengths, const Tensor& step_mask,
                            const Tensor& fixed_input,
                            const std::vector<RnnWeights>* prepared,
                            const std::vector<Tensor>& input_gates) const {
  const char* name = cell_ == CellType::lstm ? "LSTM" : "GRU";
  KILN_CHECK(!prepared || prepared->size() == weights_.size(), name, ": ",
             prepared ? prepared->size() : 0, " prepared layer weights for ", weights_.size());
  const bool given_gates = !input_gates.empty();
  KILN_CHECK(!given_gates || (static_cast<int64_t>(input_gates.size()) == num_directions() &&
                              !fixed_input.defined()),
             name, ": input_gates must hold one tensor per direction (", num_directions(),
             ") and comes without fixed_input; got ", input_gates.size());
  const int64_t fixed = fixed_input.defined() ? fixed_input.size(-1) : 0;
  const int64_t x_features = given_gates ? 0 : options_.input_size - fixed;
  KILN_CHECK(x.defined() && x.dim() == 3 && x.size(2) == x_features, name, ": x must be [T, B, ",
             x_features, "]", fixed ? " (the input features before fixed_input's)" : "",
             given_gates ? " (input_gates hold layer 0's input)" : "", ", got ", x.describe());
  KILN_CHECK(!fixed_input.defined() ||
                 (fixed_input.dim() == 2 && fixed_input.size(0) == x.size(1) && fixed > 0 &&
                  fixed < options_.input_size),
             name, ": fixed_input must be [B, F] with B = ", x.size(1), " and 0 < F < ",
             options_.input_size, ", got ", fixed_input.describe());
  KILN_CHECK(cell_ == CellType::lstm || !c0.defined(),
             "GRU: has no cell state; c0 must be undefined");
  int64_t steps = x.size(0), batch = x.size(1), hidden = options_.hidden_size, D = num_directions();
  Shape state_shape{options_.num_layers * D, batch, hidden};
  for (const Tensor* s : {&h0, &c0}) {
    KILN_CHECK(!s->defined() || s->shape() == state_shape, name, ": initial state must be ",
               shape_str(state_shape), ", got ", s->describe());
  }
  KILN_CHECK(!lengths.defined() || lengths.size(0) == batch, name, ": lengths has ",
             lengths.numel(), " entries for a batch of ", batch);
  KILN_CHECK(
      !step_mask.defined() || (lengths.defined() && step_mask.shape() == Shape{steps, batch} &&
                               step_mask.dtype() == x.dtype() && step_mask.device() == x.device()),
      name, ": step_mask must be the [", steps, ", ", batch, "] ", dtype_name(x.dtype()),
      " mask of the lengths on ", x.device().str(), ", got ", step_mask.describe());
  Tensor mask = step_mask.defined() ? step_mask
                : lengths.defined() ? sequence_mask(lengths, steps, x.options())
                                    : Tensor();

  Tensor input = x;
  std::vector<Tensor> h_n, c_n;
  for (int64_t layer = 0; layer < options_.num_layers; ++layer) {
    std::vector<Tensor> outputs;
    for (int64_t dir = 0; dir < D; ++dir) {
      int64_t k = layer * D + dir;
      Tensor h = h0.defined() ? select(h0, k) : zeros_state(x, batch, hidden);
      RnnWeights w = prepared ? (*prepared)[k] : weights_[k];
      // Layer 0's given input gates ([T, B, G]), or fixed_input W_ih[:, lead:]^T ([B, G]: once,
      // not once per step).
      Tensor first_gates;
      if (layer == 0 && given_gates) {
        first_gates = input_gates[dir];
        w.w_ih = empty({w.w_hh.size(0), 0}, w.w_hh.options());
        w.w_ih_t = Tensor();
      } else if (layer == 0 && fixed > 0) {  // split W_ih's columns: rows of its transpose [I, G]
        const int64_t lead = options_.input_size - fixed;
        const Tensor w_t = transpose(w.w_ih, 0, 1);
        first_gates = matmul(fixed_input, narrow(w_t, lead, fixed));
        w.w_ih = transpose(narrow(w_t, 0, lead), 0, 1);
      }
      RnnOutput out;
      if (cell_ == CellType::lstm) {
        Tensor c = c0.defined() ? select(c0, k) : zeros_state(x, batch, hidden);
        out = lstm_layer(input, h, c, w, mask, dir == 1, first_gates);
        c_n.push_back(out.c_n);
      } else {
        out = gru_layer(input, h, w, mask, dir == 1, first_gates);
      }
      h_n.push_back(out.h_n);
      outputs.push_back(out.y);
    }
    input = D == 1 ? outputs[0] : cat(outputs, -1);
    if (layer + 1 < options_.num_layers) input = dropout(input, options_.dropout, is_training());
  }
  return {input, stack(h_n, 0), c_n.empty() ? Tensor() : stack(c_n, 0)};
}

LSTMCell::LSTMCell(int64_t input_size, int64_t hidden_size, Options options) {
  KILN_CHECK(input_size > 0 && hidden_size > 0, "LSTMCell: sizes must be positive");
  auto reg = [this](const std::string& n, Tensor t) { return register_parameter(n, t); };
  weights = make_weights(CellType::lstm, input_size, hidden_size, "", options, reg);
}

RnnState LSTMCell::forward(const Tensor& x, const Tensor& h, const Tensor& c) const {
  KILN_CHECK(x.defined() && x.dim() == 2, "LSTMCell: x must be [B, I], got ", x.describe());
  int64_t hidden = weights.w_hh.size(1);
  RnnOutput out = lstm_cell(x, h.defined() ? h : zeros_state(x, x.size(0), hidden),
                            c.defined() ? c : zeros_state(x, x.size(0), hidden), weights);
  return {Tensor(), out.h_n, out.c_n};
}

GRUCell::GRUCell(int64_t input_size, int64_t hidden_size, Options options) {
  KILN_CHECK(input_size > 0 && hidden_size > 0, "GRUCell: sizes must be positive");
  auto reg = [this](const std::string& n, Tensor t) { return register_parameter(n, t); };
  weights = make_weights(CellType::gru, input_size, hidden_size, "", options, reg);
}

RnnState GRUCell::forward(const Tensor& x, const Tensor& h) const {
  KILN_CHECK(x.defined() && x.dim() == 2, "GRUCell: x must be [B, I], got ", x.describe());
  RnnOutput out =
      gru_cell(x, h.defined() ? h : zeros_state(x, x.size(0), weights.w_hh.size(1)), weights);
  return {Tensor(), out.h_n, Tensor()};
}

}  // namespace kiln::nn
