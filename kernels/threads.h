// The CPU thread policy: one home for the thread count of every CPU parallel region, kiln's
// OpenMP loops (kernels/parallel_for.h and the row/reduction kernels) and OpenBLAS's GEMMs
// (OpenMP build: one pool for both).
//
// Which count, first match wins:
//   set_num_threads(n), n >= 1 (the CLI's --threads N)    exactly n
//   KILN_NUM_THREADS=n, n >= 1                             exactly n (0: automatic)
//   OMP_NUM_THREADS (the OpenMP runtime's own reading)     exactly that
//   otherwise: automatic, the CPUs of this process's affinity mask that other processes leave
//   idle, at least 1. Measured when the first region asks (from /proc/loadavg's count of
//   running tasks) and again every kLoadInterval (from /proc/stat's busy time less this
//   process's own CPU time).
// Why automatic: OpenMP's idle threads spin (libgomp reads OMP_WAIT_POLICY once, when it loads,
// so kiln cannot make them passive), and a spinning or slowed thread on a core another process
// keeps busy made kiln's small step 1.8x slower with one busy core and up to 24x with two, while
// one thread stayed at its quiet speed (README, "Threads").
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

constexpr int kMaxThreads = 1024;
constexpr std::chrono::milliseconds kLoadInterval{200};

// n in [1, kMaxThreads]: every later parallel region uses n threads; 0: back to the environment
// or the automatic count above. Out of range is a kiln::Error.
void set_num_threads(int n);
// The threads the next parallel region gets (automatic: re-measured at most every
// kLoadInterval). A bad KILN_NUM_THREADS is a kiln::Error here.
int num_threads();
// How num_threads() is chosen: "set_num_threads", "KILN_NUM_THREADS", "OMP_NUM_THREADS" or
// "automatic" (the train header prints "threads 2 (automatic)").
std::string num_threads_source();

// A thread count as text ("4"), as --threads and KILN_NUM_THREADS give it: an integer in
// [0, kMaxThreads], 0 meaning automatic; anything else is a kiln::Error naming `what`.
int parse_num_threads(const std::string& text, const std::string& what);

// A cap on the automatic count, n >= 1, or 0 for none (StepThreadTuner sets it). A fixed count
// (set_num_threads, KILN_NUM_THREADS, OMP_NUM_THREADS) is never capped.
void limit_automatic_threads(int n);
// The automatic count before that cap; 0 when the count is fixed.
int automatic_threads_uncapped();

// Self-timing of a repeated piece of work (a training step), for the automatic count. On some
// hosts two busy threads at times run far slower than one: on the 2-vCPU host of bench/RESULTS.md
// ("The host's slow phase, located") both threads of the small step's regions ran about 3x slower
// for seconds at a time, the step 2.8-3.4 ms against 1.2-1.6, while one thread never slowed
// (1.8-2.2 ms). Nothing inside the guest shows it but the work's own time. So the loop reports each
// repetition, and now and then a few run on one thread:
//   - a window is the last `window` repetitions, as many as take about 50 ms (3 to 16);
//   - a probe runs one window under the other setting (one thread, or back to all) and keeps it
//     when its median time per unit of work is at least 10% below the window before;
//   - a probe starts when the all-threads median rises 1.5x above the best all-threads window
//     since the last probe (a slow phase starting), after the first two windows (a process that
//     starts slow), or when the probe interval has passed: 0.25 s (but at least 20 windows) after a
//     switch, doubling when a probe keeps the setting, up to 32 s (at least 400 windows), which
//     bounds what probing costs when it finds nothing.
// Only the automatic count is tuned, and only while it is 2 or more.
class StepThreadTuner {
 public:
  StepThreadTuner() = default;
  StepThreadTuner(const StepThreadTuner&) = delete;
  StepThreadTuner& operator=(const StepThreadTuner&) = delete;
  ~StepThreadTuner();  // lifts the cap it set
  // Before and after one repetition of `work` units (tokens, or 1 for repetitions of one size).
  void begin();
  void end(double work = 1);
  // The decision itself, for tests: a repetition took `seconds` for `work` units under the
  // current limit(); returns the limit for the next one (0: all threads, 1: one).
  int observe(double seconds, double work);
  int limit() const { return d_.limit; }
  int switches() const { return d_.switches; }
  // The last kept switch: the median seconds per unit of work before and after it.
  double switched_from() const { return d_.switched_from; }
  double switched_to() const { return d_.switched_to; }

 private:
  void start_probe();
  // What observe() decides from; a fresh one starts the windows over.
  struct Decision {
    int limit = 0, switches = 0;
    bool probing = false;
    bool skip_next = false;      // the first repetition after a change of setting is not counted
    std::vector<double> recent;  // time per unit of the current window, under limit
    std::vector<double> probe;   // the same under the probed setting
    double baseline = 0;         // the median of the window before the probe
    double switched_from = 0, switched_to = 0;
    double best_all = 0;        // the best all-threads window median since the last probe
    double clock = 0;           // seconds of observed work
    double next_probe = 0;      // clock at which the next scheduled probe starts
    double interval = 0;        // seconds between scheduled probes
    double window_seconds = 0;  // the second repetition's duration times window
    size_t window = 0;          // repetitions per window, fixed at the second repetition
    int64_t seen = 0;           // repetitions observed
  };
  Decision d_;
  std::chrono::steady_clock::time_point started_;
  bool running_ = false;  // between begin() and end()
  bool applied_ = false;  // the policy holds this tuner's limit
};

}  // namespace kiln
