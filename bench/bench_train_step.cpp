// Seq2Seq training steps and decoding throughput (issue 5's workloads, bench/seq2seq_workload.h),
// kiln alone. Counters: target tokens per second and the allocator's peak bytes (kiln's, not the
// process RSS). Decoding: greedy and beam 5 on the large model with attention, sentences per
// second. bench/side_by_side.py runs the same work next to PyTorch (make bench).
#include <benchmark/benchmark.h>

#include <cmath>

#include "seq2seq_workload.h"

namespace kiln::bench {
namespace {

// Args: {cuda, size (0 small, 1 large), cell (0 gru, 1 lstm), attention (0 none, 1 bahdanau),
// bf16 (1: mixed precision, core/autocast.h; the target: a large GRU step >= 3x faster
// than in f32 on the GPU)}
void BM_TrainStep(benchmark::State& state) {
  Device device = state.range(0) ? Device::cuda() : Device::cpu();
  if (device.is_cuda() && !cuda::is_available()) {
    state.SkipWithError("no CUDA device visible");
    return;
  }
  manual_seed(1);
  Workload w = make_workload(state.range(1), state.range(2), state.range(3));
  seq2seq::Seq2Seq model(w.config);
  model.to(device);
  nn::Adam adam(model.parameters(), nn::AdamOptions{1e-3});
  Batch b = random_batch(w, device);
  AutocastScope autocast(state.range(4) ? DType::bf16 : DType::f32);
  double first = train_step(model, adam, b).item();
  if (!std::isfinite(first)) {
    state.SkipWithError("non-finite loss");
    return;
  }
  reset_peak_memory(device);
  for (auto _ : state) {
    Tensor loss = train_step(model, adam, b);
    if (device.is_cuda()) cuda::synchronize();
    benchmark::DoNotOptimize(loss.raw_data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(b.tokens),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_MiB"] = memory_stats(device).peak_in_use / 1048576.0;
}

// Args: {cuda, beam (1 = greedy)} on the large GRU model with attention.
void BM_Decode(benchmark::State& state) {
  Device device = state.range(0) ? Device::cuda() : Device::cpu();
  if (device.is_cuda() && !cuda::is_available()) {
    state.SkipWithError("no CUDA device visible");
    return;
  }
  manual_seed(2);
  Workload w = make_workload(true, false, true);
  seq2seq::Seq2Seq model(w.config);
  model.to(device);
  model.eval();
  Batch b = random_batch(w, device);
  for (auto _ : state) benchmark::DoNotOptimize(decode_batch(model, w, b, state.range(1)));
  state.counters["sentences/s"] = benchmark::Counter(static_cast<double>(w.batch),
                                                     benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_TrainStep)
    ->ArgNames({"cuda", "large", "lstm", "attn", "bf16"})
    ->ArgsProduct({{0, 1}, {0}, {0, 1}, {0}, {0}})
    ->ArgsProduct({{0, 1}, {1}, {0, 1}, {0}, {0}})
    ->Args({0, 1, 0, 1, 0})
    ->Args({1, 1, 0, 1, 0})
    ->ArgsProduct({{1}, {0, 1}, {0, 1}, {0}, {1}})  // bf16 on the GPU (on the CPU it is emulation)
    ->Args({1, 1, 0, 1, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)
    ->ArgNames({"cuda", "beam"})
    ->ArgsProduct({{0, 1}, {1, 5}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kiln::bench

BENCHMARK_MAIN();
