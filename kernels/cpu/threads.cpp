// The CPU thread policy (kernels/threads.h).
#include "kernels/threads.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"

namespace kiln {

namespace {

using Clock = std::chrono::steady_clock;

// The CPUs this process may run on (its affinity mask), in order.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Busy seconds (user, nice, system, irq, softirq, steal) of `cpus` since boot, from /proc/stat;
// negative when it cannot be read.
double busy_seconds(const std::vector<int>& cpus) {
  std::ifstream in("/proc/stat");
  if (!in) return -1;
  static const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
  double busy = 0;
  size_t found = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(line[3])) continue;
    std::istringstream fields(line.substr(3));
    int cpu = -1;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                       steal = 0;
    fields >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    for (int c : cpus) {
      if (c == cpu) {
        busy += static_cast<double>(user + nice + system + irq + softirq + steal);
        ++found;
      }
    }
  }
  return found == cpus.size() ? busy / ticks_per_second : -1;
}

// Tasks running or runnable right now, machine-wide, less the caller: the 4th field of
// /proc/loadavg ("3/412"), averaged over a few samples 1 ms apart; negative when unreadable.
double others_running_now() {
  constexpr int kSamples = 5;
  double total = 0;
  for (int s = 0; s < kSamples; ++s) {
    if (s > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::ifstream in("/proc/loadavg");
    double avg1, avg5, avg15;
    long running = 0;
    if (!(in >> avg1 >> avg5 >> avg15 >> running)) return -1;
    total += static_cast<double>(running - 1);
  }
  return total / kSamples;
}

class ThreadPolicy {
 public:
  int threads() {
    int fixed = fixed_.load(std::memory_order_relaxed);
    if (fixed > 0) return fixed;
    if (!initialized_.load(std::memory_order_acquire)) initialize();
    fixed = fixed_.load(std::memory_order_relaxed);
    if (fixed > 0) return fixed;
    const int64_t now = Clock::now().time_since_epoch().count();
    if (now >= next_measure_.load(std::memory_order_relaxed)) {
      std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
      if (lock.owns_lock()) remeasure();
    }
    const int automatic = automatic_.load(std::memory_order_relaxed);
    const int cap = cap_.load(std::memory_order_relaxed);
    return cap > 0 ? std::min(automatic, cap) : automatic;
  }

  void limit(int n) {
    KILN_CHECK(n >= 0 && n <= kMaxThreads, "limit_automatic_threads: ", n,
               " threads is out of range [0, ", kMaxThreads, "] (0: no limit)");
    cap_.store(n, std::memory_order_relaxed);
  }

  int uncapped() {
    threads();  // reads the environment on first use, re-measures when due
    return fixed_.load(std::memory_order_relaxed) > 0 ? 0
                                                        : automatic_.load(std::memory_order_relaxed);
  }

  void set(int n) {
    KILN_CHECK(n >= 0 && n <= kMaxThreads, "set_num_threads: ", n, " threads is out of range [0, ",
               kMaxThreads, "] (0: automatic)");
    std::lock_guard<std::mutex> lock(mutex_);
    probe_locked();
    if (n > 0) {  // wins over the environment, which is not read (a bad value there is no error)
      fixed_ = n;
      source_ = "set_num_threads";
    } else {
      set_from_environment();
    }
    initialized_.store(true, std::memory_order_release);
  }

  std::string source() {
    threads();  // reads the environment on first use
    std::lock_guard<std::mutex> lock(mutex_);
    return source_;
  }

 private:
  void initialize() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (initialized_.load(std::memory_order_acquire)) return;
    probe_locked();
    set_from_environment();  // may throw: initialized_ stays false, the next call throws again
    initialized_.store(true, std::memory_order_release);
  }

  void probe_locked() {
    if (!cpus_.empty()) return;
    cpus_ = allowed_cpus();
    // The OpenMP runtime parsed OMP_NUM_THREADS when it loaded; its count is the first thread's
    // nthreads-var, read before kiln changes it.
    omp_threads_ = omp_get_max_threads();
  }

  void set_from_environment() {
    const char* kiln = std::getenv("KILN_NUM_THREADS");
    const char* omp = std::getenv("OMP_NUM_THREADS");
    int n = kiln && *kiln ? parse_num_threads(kiln, "KILN_NUM_THREADS") : 0;
    if (n > 0) {
      fixed_ = n;
      source_ = "KILN_NUM_THREADS";
    } else if (omp && *omp) {
      fixed_ = std::max(1, omp_threads_);
      source_ = "OMP_NUM_THREADS";
    } else {
      fixed_ = 0;
      source_ = "automatic";
      // A first count at once, from the running tasks; /proc/stat needs a longer window.
      const double others = others_running_now();
      automatic_ = others < 0 ? static_cast<int>(cpus_.size()) : count_from_others(others);
      last_busy_ = busy_seconds(cpus_);
      last_self_ = process_cpu_seconds();
      last_time_ = Clock::now();
      next_measure_ = (last_time_ + kLoadInterval).time_since_epoch().count();
    }
  }

  // Threads for the CPUs the other processes leave idle (`others`: their busy CPUs, fractional).
  int count_from_others(double others) const {
    const int cpus = static_cast<int>(cpus_.size());
    const long idle = std::lround(cpus - others);
    return static_cast<int>(std::clamp<long>(idle, 1, cpus));
  }

  // Busy CPU time of the allowed CPUs since the last measurement, less this process's own.
  void remeasure() {
    const Clock::time_point now = Clock::now();
    const double busy = busy_seconds(cpus_), self = process_cpu_seconds();
    const double wall = std::chrono::duration<double>(now - last_time_).count();
    if (busy >= 0 && last_busy_ >= 0 && wall > 0) {
      const double others = ((busy - last_busy_) - (self - last_self_)) / wall;
      automatic_ = count_from_others(std::max(0.0, others));
    }
    last_busy_ = busy, last_self_ = self, last_time_ = now;
    next_measure_ = (now + kLoadInterval).time_since_epoch().count();
  }

  std::mutex mutex_;
  std::atomic<bool> initialized_{false};
  std::atomic<int> fixed_{0};      // > 0: set_num_threads, KILN_NUM_THREADS or OMP_NUM_THREADS
  std::atomic<int> automatic_{1};  // the automatic count, when fixed_ == 0
  std::atomic<int> cap_{0};        // > 0: StepThreadTuner's cap on the automatic count
  std::atomic<int64_t> next_measure_{0};  // steady-clock ticks
  std::string source_;
  std::vector<int> cpus_;
  int omp_threads_ = 1;
  double last_busy_ = -1, last_self_ = 0;
  Clock::time_point last_time_;
};

ThreadPolicy& policy() {
  static ThreadPolicy p;
  return p;
}

}  // namespace

void set_num_threads(int n) { policy().set(n); }

int num_threads() { return policy().threads(); }

std::string num_threads_source() { return policy().source(); }

void limit_automatic_threads(int n) { policy().limit(n); }

int automatic_threads_uncapped() { return policy().uncapped(); }

namespace {
// StepThreadTuner's constants (kernels/threads.h).
constexpr double kWindowSeconds = 0.05;           // a window's target length
constexpr size_t kMinWindow = 3, kMaxWindow = 16;  // repetitions per window
constexpr double kFirstInterval = 0.25, kLastInterval = 32;  // seconds between scheduled probes
constexpr double kFirstIntervalWindows = 20, kLastIntervalWindows = 400;
constexpr double kKeep = 0.9;  // a probed setting is kept at <= 90% of the time before
constexpr double kRise = 1.5;  // an all-threads window this much slower than the best one probes

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The probe interval after a switch: 0.25 s, but at least 20 windows.
double first_interval(double window_seconds) {
  return std::max(kFirstInterval, kFirstIntervalWindows * window_seconds);
}

int other_setting(int limit) { return limit == 0 ? 1 : 0; }  // all threads <-> one
}  // namespace

void StepThreadTuner::begin() {
  started_ = Clock::now();
  running_ = true;
}

void StepThreadTuner::end(double work) {
  if (!running_) return;
  running_ = false;
  const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  if (automatic_threads_uncapped() < 2) {
    // A fixed count, or one thread anyway (other processes keep the other cores busy): nothing to
    // choose. The windows start over when there is again.
    if (applied_) limit_automatic_threads(0);
    applied_ = false;
    d_ = Decision();
    return;
  }
  limit_automatic_threads(observe(seconds, work));
  applied_ = true;
}

StepThreadTuner::~StepThreadTuner() {
  if (applied_) limit_automatic_threads(0);
}

void StepThreadTuner::start_probe() {
  d_.probing = true;
  d_.probe.clear();
  d_.limit = other_setting(d_.limit);
  d_.skip_next = true;  // a team resized: its first repetition pays for that
}

int StepThreadTuner::observe(double seconds, double work) {
  const double per_unit = seconds / std::max(work, 1e-12);
  d_.clock += seconds;
  if (++d_.seen == 1) return d_.limit;  // a first repetition is a warm-up (allocations, JIT code)
  if (d_.window == 0) {  // the second sizes the windows and schedules an early first probe
    const double fit = std::round(kWindowSeconds / std::max(seconds, 1e-9));
    d_.window = static_cast<size_t>(
        std::clamp(fit, static_cast<double>(kMinWindow), static_cast<double>(kMaxWindow)));
    d_.window_seconds = seconds * static_cast<double>(d_.window);
    d_.interval = first_interval(d_.window_seconds);
    // After two windows: a process that starts in a slow phase has no faster window of its own
    // to compare with, so the first probe does not wait for the interval.
    d_.next_probe = d_.clock + 2 * d_.window_seconds;
  }
  if (d_.skip_next) {
    d_.skip_next = false;
    return d_.limit;
  }
  if (d_.probing) {
    d_.probe.push_back(per_unit);
    if (d_.probe.size() < d_.window) return d_.limit;
    const double probed = median_of(d_.probe);
    d_.probing = false;
    d_.recent.clear();
    if (probed <= kKeep * d_.baseline) {  // the probed setting stays
      ++d_.switches;
      d_.switched_from = d_.baseline;
      d_.switched_to = probed;
      d_.interval = first_interval(d_.window_seconds);
      d_.best_all = d_.limit == 0 ? probed : 0;
    } else {  // back to the setting before, and probe less often
      d_.limit = other_setting(d_.limit);
      d_.skip_next = true;
      d_.interval = std::min(std::max(kLastInterval, kLastIntervalWindows * d_.window_seconds),
                             2 * d_.interval);
      d_.best_all = d_.limit == 0 ? d_.baseline : 0;
    }
    d_.next_probe = d_.clock + d_.interval;
    return d_.limit;
  }
  d_.recent.push_back(per_unit);
  if (d_.recent.size() > d_.window) d_.recent.erase(d_.recent.begin());
  if (d_.recent.size() < d_.window) return d_.limit;
  const double current = median_of(d_.recent);
  if (d_.limit == 0 && (d_.best_all == 0 || current < d_.best_all)) d_.best_all = current;
  const bool slowed = d_.limit == 0 && current > kRise * d_.best_all;
  if (slowed || d_.clock >= d_.next_probe) {
    d_.baseline = current;
    start_probe();
  }
  return d_.limit;
}

int parse_num_threads(const std::string& text, const std::string& what) {
  size_t used = 0;
  long n = -1;
  try {
    n = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KILN_CHECK(used > 0 && used == text.size() && n >= 0 && n <= kMaxThreads, what,
             ": expected a thread count in [0, ", kMaxThreads, "] (0: automatic), got '", text,
             "'");
  return static_cast<int>(n);
}

}  // namespace kiln
