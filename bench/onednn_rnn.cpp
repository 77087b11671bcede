#include "onednn_rnn.h"

#include <algorithm>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

namespace kiln::bench {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

memory::desc f32_desc(const memory::dims& dims, Tag tag) {
  return memory::desc(dims, memory::data_type::f32, tag);
}

// Copies between a kiln tensor and a oneDNN memory of the same plain layout.
void copy_in(const Tensor& t, memory& m) {
  std::vector<float> values = t.to_vector<float>();
  std::memcpy(m.get_data_handle(), values.data(), values.size() * sizeof(float));
}

Tensor copy_out(const memory& m, const Shape& shape) {
  Tensor t = empty(shape);
  std::memcpy(t.data<float>(), m.get_data_handle(), t.numel() * sizeof(float));
  return t;
}

void reorder(memory& src, memory& dst, dnnl::stream& stream) {
  dnnl::reorder(src, dst).execute(stream, src, dst);
  stream.wait();
}

}  // namespace

struct OnednnRnn::State {
  bool lstm = true, training = true;
  int64_t T = 0, B = 0, I = 0, H = 0;
  std::vector<int64_t> kiln_gate;  // oneDNN's gate g is kiln's gate kiln_gate[g]
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::primitive fwd, bwd;
  std::unordered_map<int, memory> fwd_args, bwd_args;

  // kiln's w [G*H, K] (gate blocks of H rows) <-> oneDNN's plain ldgoi {1, 1, K, G, H}, whose
  // memory order is also gate, output, input: the same rows, the gate blocks permuted.
  memory weights_to_onednn(const Tensor& w) {
    int64_t K = w.size(1), block = H * K;
    std::vector<float> src = w.to_vector<float>();
    memory m(f32_desc({1, 1, K, int64_t(kiln_gate.size()), H}, Tag::ldgoi), engine);
    float* dst = static_cast<float*>(m.get_data_handle());
    for (size_t g = 0; g < kiln_gate.size(); ++g)
      std::copy_n(src.begin() + kiln_gate[g] * block, block, dst + g * block);
    return m;
  }
  Tensor weights_to_kiln(memory& m, int64_t K) {
    memory plain(f32_desc({1, 1, K, int64_t(kiln_gate.size()), H}, Tag::ldgoi), engine);
    reorder(m, plain, stream);
    int64_t block = H * K, gates = kiln_gate.size();
    Tensor w = empty({gates * H, K});
    const float* src = static_cast<const float*>(plain.get_data_handle());
    for (int64_t g = 0; g < gates; ++g)
      std::copy_n(src + g * block, block, w.data<float>() + kiln_gate[g] * block);
    return w;
  }
};

OnednnRnn::OnednnRnn(bool lstm, bool training, const Tensor& x, const Tensor& h0, const Tensor& c0,
                     const RnnWeights& w, const Tensor& dy)
    : s_(new State) {
  State& s = *s_;
  s.lstm = lstm;
  s.training = training;
  s.T = x.size(0), s.B = x.size(1), s.I = x.size(2), s.H = h0.size(1);
  const int64_t T = s.T, B = s.B, I = s.I, H = s.H, G = lstm ? 4 : 3;
  s.kiln_gate = lstm ? std::vector<int64_t>{0, 1, 2, 3} : std::vector<int64_t>{1, 0, 2};

  // Plain layouts for the data (kiln's), `any` for the weights: the primitive picks its own.
  memory::desc src_layer = f32_desc({T, B, I}, Tag::tnc), dst_layer = f32_desc({T, B, H}, Tag::tnc);
  memory::desc state = f32_desc({1, 1, B, H}, Tag::ldnc);
  memory::desc w_layer = f32_desc({1, 1, I, G, H}, Tag::any);
  memory::desc w_iter = f32_desc({1, 1, H, G, H}, Tag::any);
  memory::desc bias = f32_desc({1, 1, 4, H}, Tag::ldgo);  // LSTM: G rows; GRU: G + 1
  auto dir = dnnl::rnn_direction::unidirectional_left2right;
  auto fwd_kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  dnnl::primitive_desc_base fwd_pd, bwd_pd;
  if (lstm) {
    dnnl::lstm_forward::desc fd(fwd_kind, dir, src_layer, state, state, w_layer, w_iter, bias,
                                dst_layer, state, state);
    dnnl::lstm_forward::primitive_desc f(fd, s.engine);
    s.fwd = dnnl::lstm_forward(f);
    fwd_pd = f;
    if (training) {
      dnnl::lstm_backward::desc bd(dnnl::prop_kind::backward, dir, src_layer, state, state, w_layer,
                                   w_iter, bias, dst_layer, state, state, src_layer, state, state,
                                   w_layer, w_iter, bias, dst_layer, state, state);
      dnnl::lstm_backward::primitive_desc b(bd, s.engine, f);
      s.bwd = dnnl::lstm_backward(b);
      bwd_pd = b;
    }
  } else {
    dnnl::lbr_gru_forward::desc fd(fwd_kind, dir, src_layer, state, w_layer, w_iter, bias,
                                   dst_layer, state);
    dnnl::lbr_gru_forward::primitive_desc f(fd, s.engine);
    s.fwd = dnnl::lbr_gru_forward(f);
    fwd_pd = f;
    if (training) {
      dnnl::lbr_gru_backward::desc bd(dnnl::prop_kind::backward, dir, src_layer, state, w_layer,
                                      w_iter, bias, dst_layer, state, src_layer, state, w_layer,
                                      w_iter, bias, dst_layer, state);
      dnnl::lbr_gru_backward::primitive_desc b(bd, s.engine, f);
      s.bwd = dnnl::lbr_gru_backward(b);
      bwd_pd = b;
    }
  }

  // One memory per argument, in the layout the primitive asks for; the backward shares the
  // forward's data, states, bias and workspace, and has its own copy of the weights, in the format
  // it asks for (not always the forward's).
  auto make = [&](std::unordered_map<int, memory>& args, const dnnl::primitive_desc_base& pd,
                  int arg) -> memory& {
    return args[arg] = memory(pd.query_md(dnnl::query::exec_arg_md, arg), s.engine);
  };
  std::vector<int> fwd_data = {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_BIAS,
                               DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER};
  if (lstm) fwd_data.insert(fwd_data.end(), {DNNL_ARG_SRC_ITER_C, DNNL_ARG_DST_ITER_C});
  if (training) fwd_data.push_back(DNNL_ARG_WORKSPACE);
  for (int arg : fwd_data) make(s.fwd_args, fwd_pd, arg);
  copy_in(x, s.fwd_args[DNNL_ARG_SRC_LAYER]);
  copy_in(h0, s.fwd_args[DNNL_ARG_SRC_ITER]);
  if (lstm) copy_in(c0, s.fwd_args[DNNL_ARG_SRC_ITER_C]);

  // Bias rows in oneDNN's gate order; the GRU keeps b_hn apart (it sits inside r * (...)).
  std::vector<float> b_ih = w.b_ih.to_vector<float>(), b_hh = w.b_hh.to_vector<float>();
  float* b = static_cast<float*>(s.fwd_args[DNNL_ARG_BIAS].get_data_handle());
  for (int64_t g = 0; g < G; ++g) {
    int64_t k = s.kiln_gate[g];
    bool split = !lstm && g == 2;
    for (int64_t j = 0; j < H; ++j) {
      b[g * H + j] = b_ih[k * H + j] + (split ? 0.0f : b_hh[k * H + j]);
      if (split) b[3 * H + j] = b_hh[k * H + j];
    }
  }

  memory user_w_layer = s.weights_to_onednn(w.w_ih), user_w_iter = s.weights_to_onednn(w.w_hh);
  reorder(user_w_layer, make(s.fwd_args, fwd_pd, DNNL_ARG_WEIGHTS_LAYER), s.stream);
  reorder(user_w_iter, make(s.fwd_args, fwd_pd, DNNL_ARG_WEIGHTS_ITER), s.stream);
  if (!training) return;

  for (int arg : fwd_data) s.bwd_args[arg] = s.fwd_args[arg];
  reorder(user_w_layer, make(s.bwd_args, bwd_pd, DNNL_ARG_WEIGHTS_LAYER), s.stream);
  reorder(user_w_iter, make(s.bwd_args, bwd_pd, DNNL_ARG_WEIGHTS_ITER), s.stream);
  std::vector<int> diffs = {DNNL_ARG_DIFF_SRC_LAYER,     DNNL_ARG_DIFF_SRC_ITER,
                            DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER,
                            DNNL_ARG_DIFF_BIAS,          DNNL_ARG_DIFF_DST_LAYER,
                            DNNL_ARG_DIFF_DST_ITER};
  if (lstm) diffs.insert(diffs.end(), {DNNL_ARG_DIFF_SRC_ITER_C, DNNL_ARG_DIFF_DST_ITER_C});
  for (int arg : diffs) make(s.bwd_args, bwd_pd, arg);
  copy_in(dy, s.bwd_args[DNNL_ARG_DIFF_DST_LAYER]);
  // Nothing flows back into h_n, c_n: kiln's backward(y, dy) sees y alone.
  for (int arg : {DNNL_ARG_DIFF_DST_ITER, DNNL_ARG_DIFF_DST_ITER_C}) {
    if (s.bwd_args.count(arg)) {
      memory& m = s.bwd_args[arg];
      std::memset(m.get_data_handle(), 0, m.get_desc().get_size());
    }
  }
  zero_grad();
}

OnednnRnn::~OnednnRnn() = default;

void OnednnRnn::forward() {
  s_->fwd.execute(s_->stream, s_->fwd_args);
  s_->stream.wait();
}

void OnednnRnn::backward() {
  KILN_CHECK(s_->training, "OnednnRnn::backward needs a forward_training primitive");
  s_->bwd.execute(s_->stream, s_->bwd_args);
  s_->stream.wait();
}

void OnednnRnn::zero_grad() {
  for (int arg : {DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS}) {
    memory& m = s_->bwd_args.at(arg);
    std::memset(m.get_data_handle(), 0, m.get_desc().get_size());
  }
}

Tensor OnednnRnn::y() const {
  return copy_out(s_->fwd_args.at(DNNL_ARG_DST_LAYER), {s_->T, s_->B, s_->H});
}
Tensor OnednnRnn::h_n() const {
  return copy_out(s_->fwd_args.at(DNNL_ARG_DST_ITER), {s_->B, s_->H});
}
Tensor OnednnRnn::c_n() const {
  return copy_out(s_->fwd_args.at(DNNL_ARG_DST_ITER_C), {s_->B, s_->H});
}
Tensor OnednnRnn::dx() const {
  return copy_out(s_->bwd_args.at(DNNL_ARG_DIFF_SRC_LAYER), {s_->T, s_->B, s_->I});
}
Tensor OnednnRnn::dh0() const {
  return copy_out(s_->bwd_args.at(DNNL_ARG_DIFF_SRC_ITER), {s_->B, s_->H});
}
Tensor OnednnRnn::dc0() const {
  return copy_out(s_->bwd_args.at(DNNL_ARG_DIFF_SRC_ITER_C), {s_->B, s_->H});
}

RnnWeights OnednnRnn::grads() const {
  State& s = *s_;
  const int64_t H = s.H, G = s.kiln_gate.size();
  RnnWeights g;
  g.w_ih = s.weights_to_kiln(s.bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_LAYER), s.I);
  g.w_hh = s.weights_to_kiln(s.bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_ITER), H);
  // The bias rows back in kiln's order: the LSTM's one bias is both b_ih's and b_hh's gradient; the
  // GRU's n gate has b_in's (row 2) and b_hn's (row 3).
  const float* db = static_cast<const float*>(s.bwd_args.at(DNNL_ARG_DIFF_BIAS).get_data_handle());
  g.b_ih = empty({G * H});
  g.b_hh = empty({G * H});
  for (int64_t gate = 0; gate < G; ++gate) {
    int64_t k = s.kiln_gate[gate], hh_row = !s.lstm && gate == 2 ? 3 : gate;
    std::copy_n(db + gate * H, H, g.b_ih.data<float>() + k * H);
    std::copy_n(db + hh_row * H, H, g.b_hh.data<float>() + k * H);
  }
  return g;
}

}  // namespace kiln::bench
