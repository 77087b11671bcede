// Kernel benchmarks: matmul (GFLOP/s against 2*M*N*K) and a pointwise add (GB/s against
// 3*n*4 bytes: read a and b, write y), on the CPU and, when a GPU is visible, on CUDA. On CUDA a
// device-to-device copy gives the bandwidth ceiling the pointwise kernels are judged against.
// Each case checks its result once before timing (STYLE rule 20).
#include <benchmark/benchmark.h>

#include <cmath>

#include "kernels/gemm.h"
#include "kiln.h"

namespace kiln {
namespace {

Device device_of(int64_t flag) { return flag ? Device::cuda() : Device::cpu(); }

bool skip_without_gpu(benchmark::State& state, Device device) {
  if (device.is_cuda() && !cuda::is_available()) {
    state.SkipWithError("no CUDA device visible");
    return true;
  }
  return false;
}

// Args: {device (0 cpu, 1 cuda), n} for an n x n x n product.
void BM_Matmul(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (skip_without_gpu(state, device)) return;
  int64_t n = state.range(1);
  Tensor a = uniform({n, n}, -1, 1, device), b = uniform({n, n}, -1, 1, device);
  {
    // Check: row 0 of a*b against a host dot product.
    std::vector<float> ha = to(a, Device::cpu()).to_vector<float>(),
                       hb = to(b, Device::cpu()).to_vector<float>();
    std::vector<float> hc = to(matmul(a, b), Device::cpu()).to_vector<float>();
    for (int64_t j = 0; j < n; j += n / 8) {
      double dot = 0;
      for (int64_t k = 0; k < n; ++k) dot += double(ha[k]) * hb[k * n + j];
      if (std::fabs(dot - hc[j]) > 1e-3 * std::sqrt(double(n))) {
        state.SkipWithError("matmul result check failed");
        return;
      }
    }
  }
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    if (device.is_cuda()) cuda::synchronize();
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.counters["GFLOP"] =
      benchmark::Counter(2.0 * n * n * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {device, n}: y = a + b over n floats.
void BM_Add(benchmark::State& state) {
  Device device = device_of(state.range(0));
  if (skip_without_gpu(state, device)) return;
  int64_t n = state.range(1);
  Tensor a = uniform({n}, -1, 1, device), b = uniform({n}, -1, 1, device);
  {
    std::vector<float> ha = to(a, Device::cpu()).to_vector<float>(),
                       hb = to(b, Device::cpu()).to_vector<float>();
    std::vector<float> hy = to(add(a, b), Device::cpu()).to_vector<float>();
    for (int64_t i = 0; i < n; i += 9973) {
      if (hy[i] != ha[i] + hb[i]) {
        state.SkipWithError("add result check failed");
        return;
      }
    }
  }
  for (auto _ : state) {
    Tensor y = add(a, b);
    if (device.is_cuda()) cuda::synchronize();
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["GB"] = benchmark::Counter(3.0 * n * sizeof(float) * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {n}: device-to-device copy of n floats, the bandwidth ceiling (bytes read + written).
void BM_CudaCopy(benchmark::State& state) {
  if (skip_without_gpu(state, Device::cuda())) return;
  int64_t n = state.range(0);
  Tensor a = uniform({n}, -1, 1, Device::cuda());
  for (auto _ : state) {
    Tensor y = copy_to(a, a.options());
    cuda::synchronize();
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["GB"] = benchmark::Counter(2.0 * n * sizeof(float) * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// The per-step products of a small RNN (B = 64, H = 32; GRU G = 96, LSTM G = 128), as the layer
// loops issue them on raw pointers: forward h W_hh^T with W_hh^T packed ([64 x 32] x [32 x G]),
// backward dh += dg W_hh ([64 x G] x [G x 32]) and the weight gradient dg^T h ([G x 64]^T x
// [64 x 32]). Args {m, n, k, trans_a}. On the CPU these go to libxsmm when kiln has it
// (kernels/cpu/gemm.cpp), else OpenBLAS: run both builds for the ratio (bench/RESULTS.md).
void BM_SmallGemm(benchmark::State& state) {
  kernels::GemmShape s;
  s.m = state.range(0), s.n = state.range(1), s.k = state.range(2);
  s.trans_a = state.range(3) != 0;
  Tensor a = uniform({s.m * s.k}, -1, 1), b = uniform({s.k * s.n}, -1, 1), c = zeros({s.m * s.n});
  for (auto _ : state) {
    kernels::gemm(Device::cpu(), DType::f32, s, 1.0, a.data<float>(), b.data<float>(), 1.0,
                  c.data<float>());
    benchmark::DoNotOptimize(c.data<float>());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * state.iterations(),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(s.m * s.n * s.k <= kernels::kSmallGemmVolume ? "small (libxsmm if built with it)"
                                                               : "OpenBLAS");
}
BENCHMARK(BM_SmallGemm)
    ->ArgNames({"m", "n", "k", "ta"})
    ->Args({64, 96, 32, 0})
    ->Args({64, 128, 32, 0})
    ->Args({64, 32, 96, 0})
    ->Args({96, 32, 64, 1})
    ->Args({64, 768, 256, 0});

// The CPU's GEMM libraries on the products of the large Seq2Seq workload (B = 64, H = 512, GRU
// G = 1536, vocab 8000; bench/seq2seq_workload.h), two of the small one's, and at the edge of
// oneDNN's one-thread rule (kernels/gemm.h):
// each product under the automatic choice (policy 0) and OpenBLAS alone (1), in the threads the
// rule gives it (cpu_gemm_threads).
// Args {m, n, k, trans_b, policy}; FLOPs 2 m n k. The label names the library that ran.
void BM_CpuGemmLibraries(benchmark::State& state) {
  kernels::GemmShape s;
  s.m = state.range(0), s.n = state.range(1), s.k = state.range(2);
  s.trans_b = state.range(3) != 0;
  const auto policy = state.range(4) == 0 ? kernels::CpuGemmPolicy::automatic
                                          : kernels::CpuGemmPolicy::openblas_only;
  kernels::set_cpu_gemm_policy(policy);
  Tensor a = uniform({s.m * s.k}, -1, 1), b = uniform({s.k * s.n}, -1, 1), c = zeros({s.m * s.n});
  for (auto _ : state) {
    kernels::gemm(Device::cpu(), DType::f32, s, 1.0, a.data<float>(), b.data<float>(), 0.0,
                  c.data<float>());
    benchmark::DoNotOptimize(c.data<float>());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * state.iterations(),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(kernels::cpu_gemm_library_name(kernels::cpu_gemm_library(DType::f32, s)));
  kernels::set_cpu_gemm_policy(kernels::CpuGemmPolicy::automatic);
}
BENCHMARK(BM_CpuGemmLibraries)
    ->ArgNames({"m", "n", "k", "tb", "openblas"})
    ->ArgsProduct({{64}, {1536}, {512}, {0, 1}, {0, 1}})  // a recurrent step, W_hh^T packed or not
    ->ArgsProduct({{64}, {8000}, {512}, {0, 1}, {0, 1}})  // decoding's output layer
    ->ArgsProduct({{1920}, {1536}, {512}, {1}, {0, 1}})   // an input projection, T * B rows
    ->ArgsProduct({{1230}, {8000}, {512}, {1}, {0, 1}})   // training's output layer, real rows
    ->ArgsProduct({{640}, {96}, {32}, {1}, {0, 1}})       // the small GRU's input projection
    ->ArgsProduct({{640}, {32}, {96}, {0}, {0, 1}})       // its input gradient, dgates W_ih
    ->ArgsProduct({{64}, {256}, {64}, {1}, {0, 1}})       // oneDNN's one-thread edge, 2^20
    ->ArgsProduct({{64}, {512}, {64}, {1}, {0, 1}});      // above it: kiln's threads

BENCHMARK(BM_Matmul)
    ->ArgNames({"cuda", "n"})
    ->Args({0, 256})
    ->Args({0, 1024})
    ->Args({1, 1024})
    ->Args({1, 4096})
    ->UseRealTime();
BENCHMARK(BM_Add)
    ->ArgNames({"cuda", "n"})
    ->Args({0, 1 << 20})
    ->Args({0, 1 << 24})
    ->Args({1, 1 << 24})
    ->Args({1, 1 << 27})
    ->UseRealTime();
BENCHMARK(BM_CudaCopy)->ArgNames({"n"})->Args({1 << 24})->Args({1 << 27})->UseRealTime();

}  // namespace
}  // namespace kiln

BENCHMARK_MAIN();
