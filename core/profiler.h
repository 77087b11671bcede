// The profiler: a process-wide recorder of spans (ops, autograd backward nodes, parallel regions
// and kernel launches, GEMMs, host syncs, optimizer steps) and of allocations, OFF by default.
// Off, a ProfileScope costs one relaxed atomic load and a branch. On, each span takes two
// steady_clock reads and one short critical section; it is aggregated per (category, name) and kept
// as a Chrome-trace event (up to max_events; later events are counted as dropped, the
// aggregates stay exact).
//
// A library user profiles a loop of their own:
//   profiler::start();
//   for (...) { profiler::ProfileScope step("my step", profiler::Category::step); ... }
//   profiler::stop();
//   profiler::report(std::cerr);                    // the table, sorted by self time
//   profiler::write_chrome_trace("trace.json");     // chrome://tracing or ui.perfetto.dev
// A training loop can hand the whole schedule (warm-up, N steps, report, trace) to StepProfiler,
// which also reads KILN_PROFILE / KILN_PROFILE_OUT.
//
// Self time is a span's time minus the time of the spans recorded inside it on the same thread,
// so self times add up to the recorded time without double counting; total time includes them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace kiln::profiler {

enum class Category : uint8_t {
  op,         // an autograd op's forward (autograd/ops)
  backward,   // a node's backward function, and the engine around them
  kernel,     // a parallel region on the CPU (OpenMP), a kernel launch on CUDA
  gemm,       // a BLAS matrix product; carries its FLOPs
  alloc,      // an allocation that reached the system (malloc / cudaMalloc)
  sync,       // the host waits for data: item(), to_vector(), device-to-host copy, synchronize
  copy,       // a host-to-device or device-to-device copy
  optimizer,  // an optimizer step, a weight average update
  clip,       // gradient-norm clipping
  step,       // a whole training step (its self time: what no other span covers)
  user,       // anything a user marks
};
const char* category_name(Category category);

namespace detail {
inline std::atomic<bool> recording{false};
}

// The one check every instrumented call site makes.
inline bool enabled() { return detail::recording.load(std::memory_order_relaxed); }

// Records one span from construction to destruction when the profiler is on at construction.
// `name` must outlive the scope (a literal, or a string the caller holds).
class ProfileScope {
 public:
  ProfileScope(const char* name, Category category) {
    if (enabled()) begin(name, category);
  }
  // Records only when `when` holds too (a loop that forks threads only above a size).
  ProfileScope(const char* name, Category category, bool when) {
    if (when && enabled()) begin(name, category);
  }
  ~ProfileScope() {
    if (active_) end();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

  // Work figures of this span, shown in the table and the trace's args.
  void add_flops(double flops) {
    if (active_) flops_ += flops;
  }
  void add_items(int64_t items) {
    if (active_) items_ += items;
  }

 private:
  friend void record_allocation(size_t bytes, bool cache_hit);
  void begin(const char* name, Category category);
  void end();

  bool active_ = false;
  Category category_ = Category::user;
  const char* name_ = nullptr;
  ProfileScope* parent_ = nullptr;  // the enclosing recorded span on this thread
  uint64_t session_ = 0;            // a scope outliving stop() / start() is not recorded
  int64_t begin_ns_ = 0, child_ns_ = 0;
  int64_t bytes_ = 0, allocations_ = 0, items_ = 0;
  double flops_ = 0;
};

// An allocation of `bytes` (rounded size), served from the allocator's cache or not. Counted in
// the summary and charged to the innermost recorded span of this thread.
void record_allocation(size_t bytes, bool cache_hit);

// Clears what was recorded and starts recording.
void start();
// Stops recording; what was recorded stays for report(), summary() and write_chrome_trace().
void stop();
// Records again without clearing (a loop profiled in pieces: wall time adds up over them).
void resume();
bool is_recording();
// The trace keeps at most this many events (default 200000, about 30 MB of JSON).
void set_max_events(size_t max_events);
// Counts a finished step (the summary's "steps"); StepProfiler calls it.
void count_step();

struct Row {
  std::string name;
  Category category = Category::user;
  int64_t count = 0;
  int64_t total_ns = 0, self_ns = 0;
  int64_t bytes = 0, allocations = 0;  // allocated directly inside the span (not nested spans)
  int64_t items = 0;                   // loop iterations (kernel rows)
  double flops = 0;
};

struct Summary {
  int64_t steps = 0;
  int64_t wall_ns = 0;      // time recorded for (start/resume to stop, or to now)
  int64_t in_spans_ns = 0;  // self time of every span but the step spans
  int64_t host_syncs = 0;   // outermost sync spans
  int64_t parallel_regions = 0, parallel_items = 0;
  int64_t gemms = 0;
  double gemm_flops = 0;
  int64_t allocations = 0, alloc_bytes = 0, cache_hits = 0;
  size_t events = 0, dropped_events = 0;
  std::vector<Row> rows;  // by self time, longest first
};
Summary summary();

// The table (summary lines, then one row per name, longest self time first; at most max_rows).
void report(std::ostream& out, size_t max_rows = 40);
// The events as Chrome-trace JSON ({"traceEvents": [{"ph": "X", ...}]}), written durably.
// Throws kiln::Error naming `path` when it cannot be written.
void write_chrome_trace(const std::string& path);

// KILN_PROFILE: steps to profile (unset, empty or 0: none); anything but a whole number >= 0 is a
// kiln::Error naming the variable. KILN_PROFILE_OUT: the trace's path ("" when unset).
int64_t steps_from_env();
std::string trace_path_from_env();

// Profiles `steps` training steps after `warmup` unprofiled ones (the first steps allocate and
// fill caches, which later steps do not), then prints the report and writes the trace. The loop
// calls begin_step() before each step and end_step() after it; recording is on only in between,
// so the wall time is the profiled steps' time. steps == 0: does nothing.
class StepProfiler {
 public:
  static constexpr int64_t kDefaultWarmup = 2;
  StepProfiler(int64_t steps, std::string trace_path, int64_t warmup = kDefaultWarmup);
  ~StepProfiler();  // stops recording if it was left on
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  bool active() const { return steps_ > 0 && !done_; }
  void begin_step();
  // True once: after the last profiled step, when `report` holds the table (and a line naming
  // the trace file, which is then written).
  bool end_step(std::string& report);
  // The loop ended before the last profiled step: reports what was recorded (false when
  // nothing was).
  bool finish(std::string& report);

 private:
  bool complete(std::string& report);

  int64_t steps_, warmup_;
  std::string trace_path_;
  int64_t seen_ = 0;  // steps begun
  bool in_step_ = false, done_ = false;
};

}  // namespace kiln::profiler
