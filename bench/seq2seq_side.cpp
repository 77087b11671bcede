// kiln's half of the side-by-side benchmark (bench/side_by_side.py runs it next to
// bench/peers/torch_seq2seq.py and bench/peers/d2l_seq2seq.py):
//
//   seq2seq_side export --work large-gru --out DIR [--device cpu|cuda]
//       writes the workload's initial weights (DIR/model.safetensors, PyTorch names), its batch
//       (DIR/batch.safetensors) and DIR/meta.json: the model config, the loss before and after one
//       training step (and the same two with every source at full length, "unpadded", for the
//       d2l-style peer), and the greedy and beam-5 outputs of the initial weights, so the peers can
//       check that they compute the same thing before anything is timed.
//   seq2seq_side time --work large-gru --task step|greedy|beam5 --steps N [--warmup W]
//                     [--warmup-seconds S] [--device] [--precision f32|bf16] [--profile-rows R]
//                     [--cuda-graph] [--shortlist C] [--trace FILE]
//       prints one JSON line: each timed repetition's milliseconds and the allocator's peak bytes;
//       --shortlist C (greedy, beam5): decoded over C target ids, as `kiln translate --shortlist`
//       (seq2seq_workload.h, decode_batch).
//       with --profile-rows, then the profiler's table of N more repetitions on stderr (R rows),
//       and with --trace as well, their Chrome trace.
//       --cuda-graph (step on cuda): the step is captured after the warm-up into a CUDA graph
//       (kernels/cuda_graph.h) and each timed repetition replays it, as `kiln train --cuda-graph`.
//   seq2seq_side floor --work small-gru [--steps N] [--warmup W] [--warmup-seconds S (1)]
//                      [--profile-rows R] [--trace FILE]
//       what a lean step would need (CPU): the step's GEMM FLOPs and bytes, counted by the
//       profiler, over this machine's rates for one large sgemm and one large copy, next to the
//       step's time; with --profile-rows, the profiler's table of those steps (R rows); with
//       --trace, their Chrome trace (Perfetto, chrome://tracing).
//
// Both commands seed Philox the same way, so `time` runs on the weights `export` wrote.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "seq2seq_workload.h"

namespace {

using namespace kiln;
using namespace kiln::bench;

constexpr int64_t kBeam = 5;

struct Setup {
  Workload work;
  Device device;
  std::unique_ptr<seq2seq::Seq2Seq> model;
  Batch batch;
};

Setup setup(const std::string& work_name, const std::string& device_name) {
  Setup s{workload_named(work_name), Device::parse(device_name), nullptr, {}};
  KILN_CHECK(!s.device.is_cuda() || cuda::is_available(), "seq2seq_side: --device ", device_name,
             " asked for, but no CUDA device is visible");
  manual_seed(1);
  s.model = std::make_unique<seq2seq::Seq2Seq>(s.work.config);
  s.batch = random_batch(s.work, Device::cpu());
  s.model->to(s.device);
  for (Tensor* t : {&s.batch.source, &s.batch.lengths, &s.batch.target_in, &s.batch.target_out,
                    &s.batch.mask}) {
    *t = to(*t, s.device);
  }
  return s;
}

void run_export(const std::string& work_name, const std::string& device_name,
                const std::string& dir) {
  Setup s = setup(work_name, device_name);
  std::filesystem::create_directories(dir);
  safetensors::save(dir + "/model.safetensors", s.model->state_dict());
  safetensors::save(dir + "/batch.safetensors", {{"source", s.batch.source},
                                                 {"lengths", s.batch.lengths},
                                                 {"target_in", s.batch.target_in},
                                                 {"target_out", s.batch.target_out},
                                                 {"mask", s.batch.mask}});
  nlohmann::json meta;
  meta["work"] = work_name;
  meta["model"] = nlohmann::json::parse(s.work.config.to_json());
  meta["tokens"] = s.batch.tokens;
  meta["max_length"] = s.work.length;
  meta["beam"] = kBeam;
  s.model->eval();
  meta["greedy"] = decode_batch(*s.model, s.work, s.batch, 1);
  meta["beam5"] = decode_batch(*s.model, s.work, s.batch, kBeam);
  s.model->train();
  nn::Adam adam(s.model->parameters(), nn::AdamOptions{1e-3});
  meta["loss0"] = train_step(*s.model, adam, s.batch).item();
  {
    NoGradGuard no_grad;
    meta["loss1"] = teacher_forced_loss(*s.model, s.batch).item();
  }
  // The same two losses with every source read to its full length (pads as tokens), from the same
  // initial weights: the d2l-style peer runs the padded batch unpacked, so only here can its loss
  // be held to kiln's.
  if (s.work.padded) {
    Setup full = setup(work_name, device_name);
    full.batch.host.source_lengths =
        from_vector(std::vector<int64_t>(full.work.batch, full.work.length), {full.work.batch});
    full.batch.lengths = to(full.batch.host.source_lengths, full.device);
    nn::Adam full_adam(full.model->parameters(), nn::AdamOptions{1e-3});
    meta["unpadded"]["loss0"] = train_step(*full.model, full_adam, full.batch).item();
    NoGradGuard no_grad;
    meta["unpadded"]["loss1"] = teacher_forced_loss(*full.model, full.batch).item();
  } else {
    meta["unpadded"] = {{"loss0", meta["loss0"]}, {"loss1", meta["loss1"]}};
  }
  std::ofstream(dir + "/meta.json") << meta.dump(1) << "\n";
  std::cout << "exported " << work_name << " to " << dir << ": loss " << meta["loss0"] << " -> "
            << meta["loss1"] << "\n";
}

// Runs `once` at least `times` times and for at least `seconds`. The seconds matter on the CPU: a
// core of this host runs its first ~0.25 s of work about 1.5x slower (its clock ramping up; the
// small step: 2.0 ms for its first 110 steps, then 1.4), which a short process measures and a long
// one (PyTorch's, after a second of imports) does not. The peers take the same two options.
template <class F> void warm_up(int times, double seconds, const F& once) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < times || std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                             start).count() < seconds;
       ++i) {
    once();
  }
}

void run_time(const std::string& work_name, const std::string& device_name, const std::string& task,
              int steps, int warmup, double warmup_seconds, const std::string& precision,
              int profile_rows, bool cuda_graph, int64_t shortlist, const std::string& trace) {
  Setup s = setup(work_name, device_name);
  KILN_CHECK(!cuda_graph || (s.device.is_cuda() && task == "step"),
             "seq2seq_side time: --cuda-graph times the training step on cuda");
  KILN_CHECK(shortlist == 0 || task != "step",
             "seq2seq_side time: --shortlist is for decoding (--task greedy or beam5)");
  std::optional<cuda::StreamScope> stream;  // a graph is captured from a stream of kiln's own
  std::optional<CudaGraph> graph;
  if (cuda_graph) {
    stream.emplace();
    s.batch.host.fixed_shapes = true;  // the eager warm-up and the capture take the same path
  }
  // --precision bf16: every product of the step (or the decoding) takes bf16 inputs.
  AutocastScope autocast(precision == "bf16" ? DType::bf16 : DType::f32);
  std::unique_ptr<nn::Adam> adam;
  if (task == "step") {
    adam = std::make_unique<nn::Adam>(s.model->parameters(), nn::AdamOptions{1e-3});
  } else {
    s.model->eval();
  }
  // The training step on the CPU runs under the automatic thread count's self-timing, as `kiln
  // train`'s steps do (kernels/threads.h).
  StepThreadTuner thread_tuner;
  // Decoding: the prepared weights made once for every repetition, as kiln translate makes them
  // once per run (seq2seq::DecodingWeightsCache); the warm-up makes them.
  seq2seq::DecodingWeightsCache prepared;
  const bool tune_threads = task == "step" && s.device.is_cpu();
  auto once = [&] {
    if (graph) {
      graph->replay();
    } else if (task == "step") {
      if (tune_threads) thread_tuner.begin();
      train_step(*s.model, *adam, s.batch);
      if (tune_threads) thread_tuner.end();
    } else {
      decode_batch(*s.model, s.work, s.batch, task == "greedy" ? 1 : kBeam, shortlist, &prepared);
    }
    if (s.device.is_cuda()) cuda::synchronize();
  };
  warm_up(std::max(warmup, cuda_graph ? 1 : 0), warmup_seconds, once);
  if (cuda_graph) {
    graph.emplace(s.device);
    graph->capture([&] { train_step(*s.model, *adam, s.batch); });
  }
  reset_peak_memory(s.device);
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    auto start = std::chrono::steady_clock::now();
    once();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  nlohmann::json out;
  out["ms"] = ms;
  out["peak_bytes"] = memory_stats(s.device).peak_in_use;
  out["tokens"] = s.batch.tokens;
  out["sentences"] = s.work.batch;
  out["thread_switches"] = thread_tuner.switches();  // the self-timing's kept changes
  std::cout << out.dump() << "\n";
  // --profile-rows: the same repetitions again under the profiler (so its cost is not in the
  // times above), its table on stderr (stdout is the JSON line side_by_side.py reads).
  if (profile_rows > 0) {
    profiler::start();
    for (int i = 0; i < steps; ++i) {
      once();
      profiler::count_step();  // the report's "N steps" (StepProfiler counts them in training)
    }
    profiler::stop();
    profiler::report(std::cerr, static_cast<size_t>(profile_rows));
    if (!trace.empty()) profiler::write_chrome_trace(trace);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Milliseconds of each of `reps` runs of f.
template <class F> std::vector<double> times_ms(int reps, const F& f) {
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto start = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  return ms;
}

// The floor of a training step on the CPU. FLOPs: the GEMMs the profiler counts (everything else
// is pointwise and adds a few percent). Bytes: every byte the step allocates is written once and
// read at least once (2x), plus Adam's traffic over the parameters (reads p, g, m, v, writes p, m,
// v) and the clip's read of g: 8 floats a parameter. A lean step moves at least those bytes at the
// copy rate and does those FLOPs at the rate of a large sgemm; small GEMMs cannot reach that rate,
// so this is a lower bound, not a target.
void run_floor(const std::string& work_name, int steps, int warmup, double warmup_seconds,
               int profile_rows, const std::string& trace) {
  Setup s = setup(work_name, "cpu");
  nn::Adam adam(s.model->parameters(), nn::AdamOptions{1e-3});
  warm_up(warmup, warmup_seconds, [&] { train_step(*s.model, adam, s.batch); });
  double step_ms = median(times_ms(steps, [&] { train_step(*s.model, adam, s.batch); }));
  profiler::start();
  for (int i = 0; i < steps; ++i) {
    train_step(*s.model, adam, s.batch);
    profiler::count_step();
  }
  profiler::stop();
  profiler::Summary sum = profiler::summary();
  double flops = sum.gemm_flops / steps;
  double allocated = static_cast<double>(sum.alloc_bytes) / steps;
  double params = static_cast<double>(s.model->num_parameters());
  double bytes = 2 * allocated + 8 * sizeof(float) * params;

  NoGradGuard no_grad;
  const int64_t n = 512;  // sgemm of 2 n^3 FLOPs; the copy: 16M floats (64 MB read, 64 MB written)
  Tensor a = uniform({n, n}, -1, 1), b = uniform({n, n}, -1, 1), big = uniform({16 << 20}, -1, 1);
  matmul(a, b);
  // The machine's rates are its best of 10: on a loaded machine a median measures the load.
  std::vector<double> gemm = times_ms(10, [&] { matmul(a, b); });
  std::vector<double> copy = times_ms(10, [&] { mul(big, 1.0); });
  double gemm_ms = *std::min_element(gemm.begin(), gemm.end());
  double copy_ms = *std::min_element(copy.begin(), copy.end());
  double gemm_rate = 2.0 * n * n * n / (gemm_ms * 1e-3);
  double copy_rate = 2.0 * big.numel() * sizeof(float) / (copy_ms * 1e-3);
  double lean_ms = 1e3 * (flops / gemm_rate + bytes / copy_rate);

  nlohmann::json out;
  out["work"] = work_name;
  out["parameters"] = params;
  out["gemm_mflop"] = flops / 1e6;
  out["allocated_mb"] = allocated / 1e6;
  out["bytes_mb"] = bytes / 1e6;
  out["sgemm_gflops"] = gemm_rate / 1e9;
  out["copy_gbs"] = copy_rate / 1e9;
  out["lean_ms"] = lean_ms;
  out["step_ms"] = step_ms;
  std::cout << out.dump() << "\n";
  std::printf(
      "%s: %.1f MFLOP in GEMMs and %.2f MB moved a step (%.2f MB allocated, written and read; "
      "%.0f parameters' Adam and clip traffic); at this machine's %.1f GFLOP/s (sgemm %lld^3) "
      "and %.1f GB/s (copy), best of 10, a lean step needs %.2f ms; kiln's step: %.2f ms "
      "(median of %d), %.1fx that\n",
      work_name.c_str(), flops / 1e6, bytes / 1e6, allocated / 1e6, params, gemm_rate / 1e9,
      static_cast<long long>(n), copy_rate / 1e9, lean_ms, step_ms, steps, step_ms / lean_ms);
  if (profile_rows > 0) profiler::report(std::cout, static_cast<size_t>(profile_rows));
  if (!trace.empty()) profiler::write_chrome_trace(trace);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln's half of the Seq2Seq side-by-side benchmark (bench/side_by_side.py)"};
  app.require_subcommand(1);
  std::string work, device = "cpu", out, task = "step", precision = "f32", trace;
  int steps = 5, warmup = 1, profile_rows = 0;
  double warmup_seconds = 0, floor_warmup_seconds = 1;
  int64_t shortlist = 0;
  bool cuda_graph = false;
  std::vector<std::string> names = workload_names();

  CLI::App* exp =
      app.add_subcommand("export", "write weights, batch and reference results for the peer");
  exp->add_option("--work", work, "workload")->required()->check(CLI::IsMember(names));
  exp->add_option("--device", device, "cpu or cuda");
  exp->add_option("--out", out, "output folder")->required();

  CLI::App* tim = app.add_subcommand("time", "time a task, one JSON line of milliseconds");
  tim->add_option("--work", work, "workload")->required()->check(CLI::IsMember(names));
  tim->add_option("--device", device, "cpu or cuda");
  tim->add_option("--task", task, "step, greedy or beam5")
      ->check(CLI::IsMember({"step", "greedy", "beam5"}));
  tim->add_option("--steps", steps, "timed repetitions")->check(CLI::PositiveNumber);
  tim->add_option("--warmup", warmup, "untimed repetitions first")->check(CLI::NonNegativeNumber);
  tim->add_option("--warmup-seconds", warmup_seconds,
                  "and keep warming up until this many seconds have passed (default 0)")
      ->check(CLI::NonNegativeNumber);
  tim->add_option("--precision", precision, "f32, or bf16 (mixed precision: core/autocast.h)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  tim->add_option("--profile-rows", profile_rows,
                  "then the same repetitions under the profiler: its table on stderr, this many rows")
      ->check(CLI::NonNegativeNumber);
  tim->add_flag("--cuda-graph", cuda_graph,
                "step on cuda: capture it after the warm-up, time replays of the CUDA graph");
  tim->add_option("--trace", trace,
                  "with --profile-rows: the profiled repetitions' Chrome trace (Perfetto) to this file");
  tim->add_option("--shortlist", shortlist,
                  "greedy, beam5: decode over this many target ids (the most frequent), 0: all")
      ->check(CLI::NonNegativeNumber);

  CLI::App* flo = app.add_subcommand("floor", "FLOPs, bytes and the lean time of a CPU step");
  flo->add_option("--work", work, "workload")->required()->check(CLI::IsMember(names));
  flo->add_option("--steps", steps, "profiled and timed steps")->check(CLI::PositiveNumber);
  flo->add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  flo->add_option("--warmup-seconds", floor_warmup_seconds,
                  "and keep warming up until this many seconds have passed (default 1)")
      ->check(CLI::NonNegativeNumber);
  flo->add_option("--profile-rows", profile_rows,
                  "then the profiler's table of the profiled steps, this many rows")
      ->check(CLI::NonNegativeNumber);
  flo->add_option("--trace", trace, "then the profiled steps' Chrome trace (Perfetto) to this file");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*exp) run_export(work, device, out);
    if (*tim) {
      run_time(work, device, task, steps, warmup, warmup_seconds, precision, profile_rows,
               cuda_graph, shortlist, trace);
    }
    if (*flo) run_floor(work, steps, warmup, floor_warmup_seconds, profile_rows, trace);
  } catch (const std::exception& e) {
    std::cerr << "seq2seq_side: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
