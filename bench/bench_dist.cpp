// Data parallelism's costs, run alone or as N ranks under mpirun (the same program):
//
//   all-reduce: the sum over the ranks of f32 buffers from 4 KiB to 64 MiB, on the host (MPI) and,
//     where a GPU is visible, on the device (NCCL). Reported as nccl-tests does: algbw = bytes /
//     time, busbw = algbw * 2 (N - 1) / N, the rate each rank's link must move for a ring
//     all-reduce (so busbw compares across N; a world of one moves nothing and prints none).
//   step: the Seq2Seq training step of bench/seq2seq_workload.h (small and large, GRU and LSTM)
//     with the global batch of 64 sentences split across the ranks, through dist::DataParallel.
//     The time is the median over the steps of the slowest rank's step. On a GPU each step is timed
//     with the reductions overlapping backward and with them all sent after it (--no-overlap
//     does the latter on the CPU).
//
//   scaling model (--model N:BUSBW, in a world of one): what N ranks would take for the step on the
//     global batch of 64, from this device's measured steps on 64 and on 64 / N sentences, its
//     backward time, the gradient bytes and a bus bandwidth BUSBW GB/s for the all-reduce across N
//     devices (measured with N devices, or nccl-tests' figure for the machine):
//       comm      = 2 (N - 1) / N * gradient bytes / BUSBW      (ring all-reduce of every bucket)
//       last      = the same for the last bucket (up to 4 MiB), which only starts once backward
//       ends exposed   = max(last, comm - backward(64 / N))          (the rest hides behind
//       backward) step(N)   = step(64 / N) + exposed;  speedup = step(64) / step(N);  efficiency =
//       speedup / N
//   bench_dist [--steps N] [--only allreduce|step] [--work NAME[,NAME]] [--no-overlap]
//              [--model N:BUSBW]
//   mpirun -np 2 bench_dist                  (OMP_NUM_THREADS=1 each: 2 ranks x 1 thread)
//   OMP_NUM_THREADS=2 bench_dist             (1 rank x 2 threads)
// Every rank runs the same fixed number of iterations (no adaptive timing: the collectives must
// match), and only rank 0 prints.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "seq2seq_workload.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void sync(Device device) {
  if (device.is_cuda()) cuda::synchronize();
}

// The slowest rank's `seconds`: what the job waits for (a max over the ranks, as a sum of one-hot
// slots, since the communicator reduces by sum).
double slowest(dist::Communicator& comm, double seconds) {
  Tensor slots = zeros({comm.world_size()}, {DType::f64});
  slots.data<double>()[comm.rank()] = seconds;
  comm.all_reduce(slots);
  std::vector<double> all = slots.to_vector<double>();
  return *std::max_element(all.begin(), all.end());
}

// The median over `repeats` of the slowest rank's time for one all_reduce of `bytes`.
double time_all_reduce(dist::Communicator& comm, size_t bytes, Device device, int repeats) {
  Tensor t = ones({static_cast<int64_t>(bytes / 4)}, {DType::f32, device});
  comm.all_reduce(t);  // warm-up: connections, NCCL channels
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    comm.barrier();
    sync(device);
    auto start = Clock::now();
    comm.all_reduce(t);
    sync(device);
    times.push_back(slowest(comm, seconds_since(start)));
  }
  return median(times);
}

void all_reduce_table(dist::Communicator& comm, Device device, const std::string& backend) {
  if (comm.rank() == 0) {
    std::printf("all_reduce (sum, f32) on %s through %s, %d ranks\n", device.str().c_str(),
                backend.c_str(), comm.world_size());
    std::printf("%12s %12s %14s %14s\n", "bytes", "time us", "algbw GB/s", "busbw GB/s");
  }
  for (size_t bytes = 4096; bytes <= (size_t(64) << 20); bytes *= 4) {
    int repeats = bytes >= (size_t(16) << 20) ? 10 : 30;
    double seconds = time_all_reduce(comm, bytes, device, repeats);
    double algbw = bytes / seconds / 1e9;
    double busbw = algbw * 2.0 * (comm.world_size() - 1) / comm.world_size();
    if (comm.rank() == 0) {
      std::printf("%12zu %12.1f %14.3f %14.3f\n", bytes, seconds * 1e6, algbw, busbw);
    }
  }
}

struct StepTimes {
  double step = 0, backward = 0;  // medians, seconds
  int64_t gradient_bytes = 0;
};

// The global batch's step through DataParallel: this rank's share of the 64 sentences, the loss
// normalised by the global target-token count and the gradients summed. `split` > 0 times one
// rank's share of a global batch split `split` ways instead (for the scaling model), unprinted.
StepTimes step_row(dist::Communicator& comm, const std::string& name, Device device, int steps,
                   bool overlap, int split = 0) {
  Workload w = workload_named(name);
  const int64_t global_batch = w.batch;
  const int ways = split > 0 ? split : comm.world_size();
  const int part = split > 0 ? 0 : comm.rank();
  w.batch = global_batch * (part + 1) / ways - global_batch * part / ways;
  manual_seed(1);
  seq2seq::Seq2Seq model(w.config);
  model.to(device);
  nn::Adam adam(model.parameters(), nn::AdamOptions{1e-3});
  dist::DataParallelOptions options;
  options.reduce = dist::ReduceOp::sum;
  options.overlap = overlap;
  dist::DataParallel dp(model.parameters(), options, comm);
  manual_seed(100 + comm.rank());
  Batch b = random_batch(w, device);
  double global_tokens = comm.all_reduce_value(static_cast<double>(b.tokens));
  int64_t gradient_bytes = 0;
  for (const Tensor& p : model.parameters()) gradient_bytes += p.nbytes();

  std::vector<double> times, backward_times;
  for (int i = 0; i < steps + 2; ++i) {
    comm.barrier();
    auto start = Clock::now();
    adam.zero_grad();
    Tensor loss = mul(teacher_forced_loss(model, b), b.tokens / global_tokens);
    sync(device);
    auto backward_start = Clock::now();
    dp.backward(loss);
    sync(device);
    double backward = seconds_since(backward_start);
    nn::clip_grad_norm(model.parameters(), 1.0);
    adam.step();
    sync(device);
    double step = slowest(comm, seconds_since(start));
    if (i >= 2) {  // 2 warm-up steps
      times.push_back(step);
      backward_times.push_back(backward);
    }
  }
  StepTimes result{median(times), median(backward_times), gradient_bytes};
  if (comm.rank() == 0 && split == 0) {
    const char* threads = std::getenv("OMP_NUM_THREADS");
    std::printf(
        "%-16s %-7s %2d ranks x %s threads  %8.2f ms/step  (%s; %zu buckets, %.1f MB of "
        "gradients, %d steps)\n",
        name.c_str(), device.str().c_str(), comm.world_size(), threads ? threads : "default",
        median(times) * 1e3, overlap ? "overlapped" : "after backward", dp.num_buckets(),
        gradient_bytes / 1e6, steps);
  }
  return result;
}

// The scaling model of the header comment, for `ranks` devices like this one joined by `busbw`
// GB/s, from steps measured here in a world of one.
void model_row(dist::Communicator& comm, const std::string& name, Device device, int steps,
               int ranks, double busbw) {
  StepTimes whole = step_row(comm, name, device, steps, true, 1);
  StepTimes share = step_row(comm, name, device, steps, true, ranks);
  const double ring = 2.0 * (ranks - 1) / ranks / (busbw * 1e9);
  const double bucket = 4.0 * (1 << 20);
  const double comm_all = ring * whole.gradient_bytes;
  const double comm_last = ring * std::min<double>(bucket, whole.gradient_bytes);
  const double exposed = std::max(comm_last, comm_all - share.backward);
  const double predicted = share.step + exposed;
  const double speedup = whole.step / predicted;
  std::printf(
      "model %-12s %-7s N=%d busbw %.0f GB/s: step(64) %.2f ms, step(64/N) %.2f ms (backward "
      "%.2f), %.1f MB: comm %.2f ms, exposed %.2f ms -> step(N) %.2f ms, speedup %.2f, "
      "efficiency %.0f%%\n",
      name.c_str(), device.str().c_str(), ranks, busbw, whole.step * 1e3, share.step * 1e3,
      share.backward * 1e3, whole.gradient_bytes / 1e6, comm_all * 1e3, exposed * 1e3,
      predicted * 1e3, speedup, 100 * speedup / ranks);
}

int run(int argc, char** argv) {
  int steps = 20;
  std::string only, works = "small-gru,small-lstm,large-gru,large-lstm";
  bool overlap = true;
  int model_ranks = 0;
  double model_busbw = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      KILN_CHECK(i + 1 < argc, "bench_dist: ", arg, " needs a value");
      return argv[++i];
    };
    if (arg == "--steps") {
      steps = std::atoi(value().c_str());
      KILN_CHECK(steps > 0, "bench_dist: --steps must be > 0");
    } else if (arg == "--only") {
      only = value();
      KILN_CHECK(only == "allreduce" || only == "step", "bench_dist: --only allreduce|step, got '",
                 only, "'");
    } else if (arg == "--no-overlap") {
      overlap = false;
    } else if (arg == "--work") {
      works = value();
    } else if (arg == "--model") {
      std::string spec = value();
      size_t colon = spec.find(':');
      char* end = nullptr;
      model_ranks = colon == std::string::npos ? 0 : std::atoi(spec.substr(0, colon).c_str());
      if (colon != std::string::npos) model_busbw = std::strtod(spec.c_str() + colon + 1, &end);
      KILN_CHECK(model_ranks >= 2 && model_ranks <= 64 && model_busbw > 0 && end && *end == 0,
                 "bench_dist: --model N:BUSBW wants 2 <= N <= 64 ranks and a bus bandwidth in "
                 "GB/s > 0, e.g. --model 8:400; got '",
                 spec, "'");
    } else {
      KILN_FAIL("bench_dist: unknown argument '", arg,
                "' (usage: bench_dist [--steps N] [--only allreduce|step] [--work NAME,...] "
                "[--no-overlap] [--model N:BUSBW])");
    }
  }
  dist::Communicator& comm = dist::world();
  if (model_ranks > 0) {
    KILN_CHECK(comm.world_size() == 1, "bench_dist: --model runs in a world of one (no mpirun)");
    std::stringstream list(works);
    std::string name;
    while (std::getline(list, name, ',')) {
      model_row(comm, name, Device::cpu(), steps, model_ranks, model_busbw);
      if (cuda::is_available())
        model_row(comm, name, Device::cuda(), steps, model_ranks, model_busbw);
    }
    return 0;
  }
  if (comm.rank() == 0) {
    std::printf("bench_dist: %d rank(s), backends %s\n", comm.world_size(),
                comm.backends().c_str());
  }
  if (only != "step" && comm.has_backend()) {
    all_reduce_table(comm, Device::cpu(), "MPI");
    if (cuda::is_available()) all_reduce_table(comm, Device::cuda(comm.local_rank()), "NCCL");
  }
  if (only != "allreduce") {
    std::stringstream list(works);
    std::string name;
    while (std::getline(list, name, ',')) {
      step_row(comm, name, Device::cpu(), steps, overlap);
      if (cuda::is_available()) {
        for (bool o : {true, false})
          step_row(comm, name, Device::cuda(comm.local_rank()), steps, o);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  try {
    return kiln::bench::run(argc, argv);
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
