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
#include <string>

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

}  // namespace kiln
