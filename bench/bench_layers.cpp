// Benchmarks of the framework kernels of issue 3, on the CPU and (when visible) CUDA:
//   - LSTM / GRU layer, forward and forward+backward, fused (lstm_layer / gru_layer) and, on the
//     CPU, the same layer composed op by op from the foundation ops (the 2x target);
//     counter GFLOP = GEMM FLOPs: forward 2*T*B*G*H*(I+H), forward+backward 3x that.
//   - softmax-CE forward+backward, N=3200, V=32000, ~15% masked rows;
//     counter GB = bytes the fused kernels must move: 3 * N*V*4 (read logits twice, write grad).
//   - log_softmax_topk on a beam-5 step's [320, 8000] logits, the output bias added inside its
//     read or by an add before it; counter GB = the logits read once, N*V*4.
//   - one Bahdanau attention step (B=64, S=12, A=Hk=256 or 32, 2 padded keys per sentence),
//     forward and forward+backward, fused (bahdanau_attention) and the taped composition it
//     replaced; counter GB = the fused kernels' byte floor of kernels/attention.h as if nothing
//     were padded, for both.
//   - Adam step and clip-grad-norm over ~58M parameters in 20 tensors;
//     Adam moves 7 * n * 4 bytes (read p, g, m, v; write p, m, v); clip reads g (norm) and reads
//     and writes it (scale): 3 * n * 4 bytes when it clips.
// Each case checks its result (finite, expected shape) before timing. cuDNN's RNN is timed in
// BM_CudnnVsKiln (CUDA builds with cuDNN), oneDNN's CPU RNN in BM_OnednnVsKiln (builds that found
// oneDNN), both beside kiln's fused layer.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>

#include "kernels/cross_entropy.h"
#include "kernels/reduce.h"
#include "kiln.h"

#ifdef KILN_WITH_CUDNN
#include <chrono>
#include <memory>

#include "cudnn_rnn.h"
#endif

#ifdef KILN_WITH_ONEDNN
#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include "onednn_rnn.h"
#endif

namespace kiln {
namespace {

Device device_of(int64_t flag) { return flag ? Device::cuda() : Device::cpu(); }

bool unavailable(benchmark::State& state, Device device) {
  if (device.is_cuda() && !cuda::is_available()) {
    state.SkipWithError("no CUDA device visible");
    return true;
  }
  return false;
}

void sync(Device device) {
  if (device.is_cuda()) cuda::synchronize();
}

bool finite(const Tensor& t) { return std::isfinite(sum(t).item()); }

// The same LSTM layer written with foundation ops only: per step, per gate, two matmuls and a
// pointwise chain. What a user would write without the fused op.
Tensor composed_lstm(const Tensor& x, const std::vector<Tensor>& w_ih,
                     const std::vector<Tensor>& w_hh, const std::vector<Tensor>& b, bool gru) {
  int64_t steps = x.size(0), batch = x.size(1), hidden = w_hh[0].size(0);
  Tensor h = zeros({batch, hidden}, x.options()), c = zeros({batch, hidden}, x.options());
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < steps; ++t) {
    Tensor xt = select(x, t);
    auto pre = [&](int k) {
      return matmul(xt, w_ih[k], false, true) + matmul(h, w_hh[k], false, true) + b[k];
    };
    if (gru) {
      Tensor r = sigmoid(pre(0)), z = sigmoid(pre(1));
      Tensor n = tanh(matmul(xt, w_ih[2], false, true) + b[2] +
                      r * (matmul(h, w_hh[2], false, true) + b[3]));
      h = (1.0 - z) * n + z * h;
    } else {
      Tensor i = sigmoid(pre(0)), f = sigmoid(pre(1)), g = tanh(pre(2)), o = sigmoid(pre(3));
      c = f * c + i * g;
      h = o * tanh(c);
    }
    ys.push_back(h);
  }
  return stack(ys, 0);
}

// Args: {cuda, cell (0 lstm, 1 gru), T, B, H (= I), backward, composed}
void BM_RnnLayer(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  bool gru = state.range(1) == 1, backward = state.range(5) == 1, composed = state.range(6) == 1;
  int64_t T = state.range(2), B = state.range(3), H = state.range(4), I = H, G = gru ? 3 : 4;
  manual_seed(1);
  double bound = 1 / std::sqrt(double(H));
  Tensor x = uniform({T, B, I}, -1, 1, device).set_requires_grad(backward);
  RnnWeights w{uniform({G * H, I}, -bound, bound, device),
               uniform({G * H, H}, -bound, bound, device), uniform({G * H}, -bound, bound, device),
               uniform({G * H}, -bound, bound, device)};
  std::vector<Tensor> w_ih, w_hh, b;
  for (int k = 0; k < G; ++k) {
    w_ih.push_back(uniform({H, I}, -bound, bound, device));
    w_hh.push_back(uniform({H, H}, -bound, bound, device));
    b.push_back(uniform({H}, -bound, bound, device));
  }
  if (gru) b.push_back(uniform({H}, -bound, bound, device));
  for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) t->set_requires_grad(backward);
  for (auto* list : {&w_ih, &w_hh, &b}) {
    for (Tensor& t : *list) t.set_requires_grad(backward);
  }
  Tensor h0 = zeros({B, H}, device), c0 = zeros({B, H}, device);
  auto run = [&] {
    Tensor y = composed ? composed_lstm(x, w_ih, w_hh, b, gru)
                        : (gru ? gru_layer(x, h0, w) : lstm_layer(x, h0, c0, w)).y;
    if (backward) kiln::backward(sum(y));
    return y;
  };
  if (!finite(run())) {
    state.SkipWithError("non-finite output");
    return;
  }
  for (auto _ : state) {
    Tensor y = run();
    sync(device);
    benchmark::DoNotOptimize(y.raw_data());
  }
  double flops = 2.0 * T * B * G * H * (I + H) * (backward ? 3 : 1);
  state.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {cuda}. The fused kernels themselves (forward, mean over valid rows, backward), as a
// model runs them: through the op, the logits' gradient would also be accumulated into a leaf,
// which a model's logits (the output of a Linear) never are.
void BM_CrossEntropy(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  const int64_t N = 3200, V = 32000;
  manual_seed(2);
  Tensor logits = uniform({N, V}, -4, 4, device);
  std::vector<int64_t> targets(N);
  for (int64_t n = 0; n < N; ++n)
    targets[n] = n % 7 == 3 ? -100 : (n * 7919) % V;  // 1/7 ~ 14% ignored
  Tensor target_t = to(from_vector(targets, {N}), device);
  kernels::CrossEntropyArgs args{-100, 0.1};
  Tensor rows = empty({N}, device), lse = empty({N}, device), valid = empty({N}, device);
  Tensor total = empty({}, device), count = empty({}, device), loss = empty({}, device);
  Tensor grad_loss = ones({}, device), grad_logits = empty({N, V}, device);
  auto run = [&] {
    kernels::cross_entropy_forward(logits, target_t, Tensor(), args, rows, lse, valid);
    kernels::sum_all(rows, 1.0, total);
    kernels::sum_all(valid, 1.0, count);
    kernels::divide_by_count(total, count, loss);
    kernels::cross_entropy_backward(logits, target_t, lse, valid, args, grad_loss, count,
                                    grad_logits);
  };
  run();
  // Check against the op (which the reference tests compare with PyTorch).
  double op_loss = cross_entropy(logits, target_t, {-100, 0.1, Reduction::mean}).item();
  if (!std::isfinite(loss.item()) || std::fabs(loss.item() - op_loss) > 1e-4 * std::fabs(op_loss)) {
    state.SkipWithError("cross-entropy result check failed");
    return;
  }
  for (auto _ : state) {
    run();
    sync(device);
  }
  state.counters["GB"] =
      benchmark::Counter(3.0 * N * V * 4 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// A beam-5 decoding step's ranking of 64 sentences (320 rows of 8,000 logits, the best 10 of
// each): log_softmax_topk with the output bias added inside its read (fused:1), or the bias added
// first by its own op (fused:0, the path before 2026-12-03). Counter GB = the byte floor of the
// fused form: the logits read once, N*V*4 (a row's three passes after the first hit the cache).
void BM_LogSoftmaxTopK(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  const bool fused = state.range(1) == 1;
  const int64_t N = 320, V = 8000, K = 10;
  manual_seed(3);
  Tensor logits = uniform({N, V}, -4, 4, device), bias = uniform({V}, -1, 1, device);
  auto run = [&] {
    return fused ? log_softmax_topk(logits, K, bias) : log_softmax_topk(logits + bias, K);
  };
  // Both forms rank the same values (DecodeFast.LogSoftmaxTopKWithABiasIsTheRankingOfTheSum).
  if (to(run().second, Device::cpu()).to_vector<int64_t>() !=
      to(log_softmax_topk(logits + bias, K).second, Device::cpu()).to_vector<int64_t>()) {
    state.SkipWithError("log_softmax_topk result check failed");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(run());
    sync(device);
  }
  state.counters["GB"] =
      benchmark::Counter(N * V * 4 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The decoder's attention step before the fused op: ~10 taped ops.
std::pair<Tensor, Tensor> taped_bahdanau(const Tensor& key_proj, const Tensor& query_proj,
                                         const Tensor& v, const Tensor& keys, const Tensor& pad) {
  int64_t batch = keys.size(0), src_len = keys.size(1);
  Tensor q = reshape(query_proj, {batch, 1, -1});
  Tensor scores = reshape(matmul(tanh(key_proj + q), reshape(v, {-1, 1})), {batch, src_len});
  Tensor weights = softmax(masked_fill(scores, pad, -1e9));
  Tensor context = reshape(matmul(reshape(weights, {batch, 1, src_len}), keys), {batch, -1});
  return {context, weights};
}

// Args: {cuda, B, S, A (= Hk), backward, fused}. Backward starts from a gradient of the context
// (what the decoder's loss reaches); the weights' gradient is the engine's zeros.
void BM_BahdanauAttention(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  const int64_t B = state.range(1), S = state.range(2), A = state.range(3), Hk = A;
  const bool backward = state.range(4) == 1, fused = state.range(5) == 1;
  manual_seed(4);
  Tensor key_proj = uniform({B, S, A}, -1, 1, device).set_requires_grad(backward);
  Tensor query = uniform({B, A}, -1, 1, device).set_requires_grad(backward);
  Tensor v = uniform({A}, -0.1, 0.1, device).set_requires_grad(backward);
  Tensor keys = uniform({B, S, Hk}, -1, 1, device).set_requires_grad(backward);
  std::vector<double> pad(B * S, 0.0);
  for (int64_t b = 0; b < B; ++b) pad[b * S + S - 1] = pad[b * S + S - 2] = 1.0;
  Tensor pad_t = to(to(from_vector(pad, {B, S}), DType::f32), device);
  Tensor grad_context = uniform({B, Hk}, -1, 1, device);
  auto run = [&] {
    auto out = fused ? bahdanau_attention(key_proj, query, v, keys, pad_t)
                     : taped_bahdanau(key_proj, query, v, keys, pad_t);
    if (backward) kiln::backward(out.first, grad_context);
    return out.first;
  };
  {
    NoGradGuard no_grad;
    auto host = [](const Tensor& t) { return to(to(t, DType::f64), Device::cpu()); };
    std::vector<double> a =
        host(bahdanau_attention(key_proj, query, v, keys, pad_t).first).to_vector<double>();
    std::vector<double> b =
        host(taped_bahdanau(key_proj, query, v, keys, pad_t).first).to_vector<double>();
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(a[i] - b[i]));
    if (!(diff <= 1e-5)) {
      state.SkipWithError("fused attention does not match the taped composition");
      return;
    }
  }
  for (auto _ : state) {
    Tensor y = run();
    sync(device);
    benchmark::DoNotOptimize(y.raw_data());
  }
  double fwd = B * S * A + B * S * Hk + 2 * B * S + B * A + A + B * Hk;
  double bwd = 2 * B * S * A + 2 * B * S * Hk + 3 * B * S + B * Hk + 4 * B * A + 2 * A;
  state.counters["GB"] = benchmark::Counter((fwd + (backward ? bwd : 0)) * 4 * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// ~58M parameters in 20 tensors, the shape of a mid-size seq2seq model.
std::vector<Tensor> model_sized_params(Device device) {
  std::vector<Tensor> params;
  manual_seed(3);
  for (int i = 0; i < 20; ++i) {
    int64_t rows = i % 2 ? 4096 : 2048;
    Tensor p = uniform({rows, 944}, -0.1, 0.1, device).set_requires_grad(true);
    p.set_grad(uniform({rows, 944}, -0.01, 0.01, device));
    params.push_back(p);
  }
  return params;
}

int64_t total_numel(const std::vector<Tensor>& params) {
  int64_t n = 0;
  for (const Tensor& p : params) n += p.numel();
  return n;
}

// Args: {cuda, scaled}
void BM_AdamStep(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  std::vector<Tensor> params = model_sized_params(device);
  nn::Adam adam(params, nn::AdamOptions{1e-4});
  // scaled: the step takes a gradient scale on the device, as after clipping (opt.step(scale)).
  const Tensor scale = state.range(1) ? full({}, 0.5, device) : Tensor();
  adam.step(scale);
  if (!finite(params[0])) {
    state.SkipWithError("non-finite parameters");
    return;
  }
  for (auto _ : state) {
    adam.step(scale);
    sync(device);
  }
  state.counters["GB"] = benchmark::Counter(7.0 * total_numel(params) * 4 * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
  state.counters["params_M"] = total_numel(params) * 1e-6;
}

// Args: {cuda}; max_norm small enough that every call scales.
void BM_ClipGradNorm(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (unavailable(state, device)) return;
  std::vector<Tensor> params = model_sized_params(device);
  if (!std::isfinite(nn::clip_grad_norm(params, 1e-3).item())) {
    state.SkipWithError("non-finite norm");
    return;
  }
  for (auto _ : state) {
    // Rescale up first so each timed call clips (the scale pass runs); that extra pass is not
    // counted.
    state.PauseTiming();
    for (Tensor& p : params) {
      NoGradGuard no_grad;
      mul_(p.grad(), 1000.0);
    }
    sync(device);
    state.ResumeTiming();
    Tensor norm = nn::clip_grad_norm(params, 1e-3);
    sync(device);
    benchmark::DoNotOptimize(norm.raw_data());
  }
  state.counters["GB"] = benchmark::Counter(3.0 * total_numel(params) * 4 * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

#ifdef KILN_WITH_CUDNN
// Args: {gru, T, B, H (= I), backward}. The iteration time is cuDNN's; kiln's fused layer is timed
// in the same loop, and the counters give both in ms and kiln/cuDNN.
void BM_CudnnVsKiln(benchmark::State& state) {
  if (!cuda::is_available()) {
    state.SkipWithError("no CUDA device visible");
    return;
  }
  bool gru = state.range(0) == 1, backward = state.range(4) == 1, bf16 = state.range(5) == 1;
  int64_t T = state.range(1), B = state.range(2), H = state.range(3), I = H, G = gru ? 3 : 4;
  Device gpu = Device::cuda();
  std::unique_ptr<bench::CudnnRnn> made;
  try {
    made = std::make_unique<bench::CudnnRnn>(!gru, T, B, I, H, bf16);
  } catch (const Error& e) {  // e.g. a cuDNN without bf16 RNNs: say so, run the other cases
    state.SkipWithError(e.what());
    return;
  }
  bench::CudnnRnn& cudnn = *made;
  // bf16: cuDNN on bf16 data with fp32 math against kiln's layer under AutocastScope(bf16) (bf16
  // GEMM inputs, fp32 gate math and states), the two mixed-precision formulations.
  AutocastScope autocast(bf16 ? DType::bf16 : DType::f32);
  cudnn.forward();
  if (!cudnn.output_is_finite()) {
    state.SkipWithError("cuDNN output not finite");
    return;
  }
  double bound = 1 / std::sqrt(double(H));
  Tensor x = uniform({T, B, I}, -1, 1, gpu).set_requires_grad(backward);
  RnnWeights w{uniform({G * H, I}, -bound, bound, gpu), uniform({G * H, H}, -bound, bound, gpu),
               uniform({G * H}, -bound, bound, gpu), uniform({G * H}, -bound, bound, gpu)};
  for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) t->set_requires_grad(backward);
  Tensor h0 = zeros({B, H}, gpu), c0 = zeros({B, H}, gpu), dy = uniform({T, B, H}, -1, 1, gpu);
  auto kiln_run = [&] {
    Tensor y = (gru ? gru_layer(x, h0, w) : lstm_layer(x, h0, c0, w)).y;
    if (backward) kiln::backward(y, dy);
  };
  kiln_run();
  double kiln_seconds = 0, cudnn_seconds = 0;
  int64_t iterations = 0;
  using clock = std::chrono::steady_clock;
  for (auto _ : state) {
    cuda::synchronize();
    auto t0 = clock::now();
    cudnn.forward();
    if (backward) cudnn.backward();
    cuda::synchronize();
    auto t1 = clock::now();
    kiln_run();
    cuda::synchronize();
    auto t2 = clock::now();
    double c = std::chrono::duration<double>(t1 - t0).count(),
           k = std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(c);
    cudnn_seconds += c;
    kiln_seconds += k;
    ++iterations;
  }
  state.counters["cudnn_ms"] = 1e3 * cudnn_seconds / iterations;
  state.counters["kiln_ms"] = 1e3 * kiln_seconds / iterations;
  state.counters["kiln/cudnn"] = kiln_seconds / cudnn_seconds;
}
BENCHMARK(BM_CudnnVsKiln)
    ->ArgNames({"gru", "T", "B", "H", "bwd", "bf16"})
    ->ArgsProduct({{0, 1}, {50}, {64}, {512, 1024}, {0, 1}, {0, 1}})
    ->Args({0, 10, 64, 32, 1, 0})
    ->Args({1, 10, 64, 32, 1, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
#endif

#ifdef KILN_WITH_ONEDNN
// "" when kiln's and oneDNN's values agree within f32 tolerance, scaled by the tensor's magnitude
// (the two sum in different orders and oneDNN has its own exp / tanh), else the first mismatch.
std::string mismatch(const char* name, const Tensor& kiln_value, const Tensor& onednn_value,
                     double& max_relative_error) {
  std::vector<float> a = kiln_value.to_vector<float>(), b = onednn_value.to_vector<float>();
  if (a.size() != b.size()) return std::string(name) + ": sizes differ";
  double scale = 0, max_error = 0;
  for (float v : a) scale = std::max(scale, double(std::fabs(v)));
  const double atol = 1e-5 * scale, rtol = 1e-4;
  std::ostringstream first;
  for (size_t i = 0; i < a.size(); ++i) {
    double error = std::fabs(double(a[i]) - double(b[i]));
    max_error = std::max(max_error, error);
    if (!(error <= atol + rtol * std::fabs(a[i])) && first.str().empty())
      first << name << "[" << i << "]: kiln " << a[i] << ", oneDNN " << b[i];
  }
  max_relative_error = std::max(max_relative_error, scale > 0 ? max_error / scale : max_error);
  if (first.str().empty()) return "";
  first << " (max |error| " << max_error << ", largest |value| " << scale << ")";
  return first.str();
}

// Args: {gru, T, B, H (= I), backward}. oneDNN's CPU RNN primitives (what PyTorch runs for CPU
// RNNs) and kiln's fused layer on the same inputs and weights: checked to agree first (y, h_n, c_n;
// with backward also dx, dh0, dc0 and every weight and bias gradient), then timed in the same loop,
// one after the other, so load from other processes hits both alike. The iteration time is
// oneDNN's; the counters give both in ms and GFLOP/s (the FLOPs of BM_RnnLayer), and kiln/onednn.
// Forward only is inference for both: oneDNN's forward_inference, kiln without autograd.
void BM_OnednnVsKiln(benchmark::State& state) {
  bool gru = state.range(0) == 1, backward = state.range(4) == 1;
  int64_t T = state.range(1), B = state.range(2), H = state.range(3), I = H, G = gru ? 3 : 4;
  manual_seed(4);
  double bound = 1 / std::sqrt(double(H));
  Tensor x = uniform({T, B, I}, -1, 1), h0 = uniform({B, H}, -1, 1), c0 = uniform({B, H}, -1, 1);
  RnnWeights w{uniform({G * H, I}, -bound, bound), uniform({G * H, H}, -bound, bound),
               uniform({G * H}, -bound, bound), uniform({G * H}, -bound, bound)};
  for (Tensor* t : {&x, &h0, &c0, &w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh})
    t->set_requires_grad(backward);
  Tensor dy = uniform({T, B, H}, -1, 1);
  std::unique_ptr<bench::OnednnRnn> onednn_rnn;
  try {
    onednn_rnn = std::make_unique<bench::OnednnRnn>(!gru, backward, x, h0, c0, w, dy);
  } catch (const std::exception& e) {  // dnnl::error: this oneDNN lacks the primitive
    state.SkipWithError((std::string("oneDNN: ") + e.what()).c_str());
    return;
  }
  bench::OnednnRnn& onednn = *onednn_rnn;
  auto kiln_run = [&] {
    RnnOutput out = gru ? gru_layer(x, h0, w) : lstm_layer(x, h0, c0, w);
    if (backward) kiln::backward(out.y, dy);
    return out;
  };
  auto onednn_run = [&] {
    onednn.forward();
    if (backward) onednn.backward();
  };

  RnnOutput out = kiln_run();
  onednn_run();
  std::vector<std::tuple<const char*, Tensor, Tensor>> pairs = {{"y", out.y, onednn.y()},
                                                                {"h_n", out.h_n, onednn.h_n()}};
  if (!gru) pairs.emplace_back("c_n", out.c_n, onednn.c_n());
  if (backward) {
    RnnWeights g = onednn.grads();
    pairs.insert(pairs.end(), {{"dx", x.grad(), onednn.dx()},
                               {"dh0", h0.grad(), onednn.dh0()},
                               {"dw_ih", w.w_ih.grad(), g.w_ih},
                               {"dw_hh", w.w_hh.grad(), g.w_hh},
                               {"db_ih", w.b_ih.grad(), g.b_ih},
                               {"db_hh", w.b_hh.grad(), g.b_hh}});
    if (!gru) pairs.emplace_back("dc0", c0.grad(), onednn.dc0());
  }
  double max_relative_error = 0;
  for (auto& [name, kiln_value, onednn_value] : pairs) {
    std::string error = mismatch(name, kiln_value, onednn_value, max_relative_error);
    if (!error.empty()) {
      state.SkipWithError(("oneDNN and kiln differ: " + error).c_str());
      return;
    }
  }

  // KILN_PROFILE=N: kiln's side profiled over N runs (after the profiler's warm-up), the table on
  // stderr, the trace written to KILN_PROFILE_OUT when set: where kiln's time goes at this size.
  // Once per case: Google Benchmark calls the function again for each batch of iterations.
  static std::set<std::vector<int64_t>> profiled;
  int64_t runs = profiler::steps_from_env();
  if (runs > 0 && profiled.insert({gru, T, B, H, backward}).second) {
    profiler::StepProfiler profile(runs, profiler::trace_path_from_env());
    std::string report;
    for (bool done = false; !done;) {
      profile.begin_step();
      kiln_run();
      done = profile.end_step(report);
    }
    std::cerr << "kiln " << (gru ? "GRU" : "LSTM") << " T=" << T << " B=" << B << " H=" << H
              << (backward ? " forward+backward" : " forward") << "\n"
              << report << "\n";
  }

  // Wall time, and the process's CPU time (all threads; with one thread a measure of the work
  // that other processes on a shared machine disturb far less than the wall time).
  double kiln_seconds = 0, onednn_seconds = 0, kiln_cpu = 0, onednn_cpu = 0;
  int64_t iterations = 0;
  using clock = std::chrono::steady_clock;
  for (auto _ : state) {
    auto t0 = clock::now();
    std::clock_t cpu0 = std::clock();
    onednn_run();
    auto t1 = clock::now();
    std::clock_t cpu1 = std::clock();
    RnnOutput timed = kiln_run();
    benchmark::DoNotOptimize(timed.y.raw_data());
    auto t2 = clock::now();
    std::clock_t cpu2 = std::clock();
    double o = std::chrono::duration<double>(t1 - t0).count(),
           k = std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(o);
    onednn_seconds += o;
    kiln_seconds += k;
    onednn_cpu += double(cpu1 - cpu0) / CLOCKS_PER_SEC;
    kiln_cpu += double(cpu2 - cpu1) / CLOCKS_PER_SEC;
    ++iterations;
  }
  double gflop = 2e-9 * T * B * G * H * (I + H) * (backward ? 3 : 1);
  state.counters["onednn_ms"] = 1e3 * onednn_seconds / iterations;
  state.counters["kiln_ms"] = 1e3 * kiln_seconds / iterations;
  state.counters["kiln/onednn"] = kiln_seconds / onednn_seconds;
  state.counters["cpu_kiln/onednn"] = kiln_cpu / onednn_cpu;
  state.counters["onednn_cpu_ms"] = 1e3 * onednn_cpu / iterations;
  state.counters["kiln_cpu_ms"] = 1e3 * kiln_cpu / iterations;
  state.counters["onednn_GFLOP/s"] = gflop * iterations / onednn_seconds;
  state.counters["kiln_GFLOP/s"] = gflop * iterations / kiln_seconds;
  state.counters["max_rel_err"] = max_relative_error;
}
BENCHMARK(BM_OnednnVsKiln)
    ->ArgNames({"gru", "T", "B", "H", "bwd"})
    ->ArgsProduct({{0, 1}, {10}, {64}, {32}, {0, 1}})
    ->ArgsProduct({{0, 1}, {50}, {64}, {512}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
#endif

void rnn_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cuda", "gru", "T", "B", "H", "bwd", "composed"});
  for (int cuda : {0, 1}) {
    for (int gru : {0, 1}) {
      for (auto [T, H] : {std::pair{10, 32}, std::pair{50, 512}, std::pair{50, 1024}}) {
        if (!cuda && H == 1024)
          continue;  // minutes per iteration on 2 cores; the 512 case shows the ratio
        for (int bwd : {0, 1}) {
          b->Args({cuda, gru, T, 64, H, bwd, 0});
          if (!cuda) b->Args({cuda, gru, T, 64, H, bwd, 1});
        }
      }
    }
  }
}

BENCHMARK(BM_RnnLayer)->Apply(rnn_args)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CrossEntropy)
    ->ArgNames({"cuda"})
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LogSoftmaxTopK)
    ->ArgNames({"cuda", "fused"})
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BahdanauAttention)
    ->ArgNames({"cuda", "B", "S", "A", "bwd", "fused"})
    ->ArgsProduct({{0, 1}, {64}, {12}, {32, 256}, {0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AdamStep)
    ->ArgNames({"cuda", "scaled"})
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ClipGradNorm)
    ->ArgNames({"cuda"})
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kiln

BENCHMARK_MAIN();
