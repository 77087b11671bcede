// The profiler's recorder (profiler.h): spans aggregated per (category, name) as they end, kept as
// trace events up to a cap, and the table and Chrome trace made from them.
#include "core/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <unordered_map>

#include "core/durable_file.h"
#include "core/error.h"

namespace kiln::profiler {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The innermost recorded span of this thread: the parent of the next one, and where an
// allocation's bytes are charged.
thread_local ProfileScope* current_scope = nullptr;

uint32_t thread_number() {  // small, stable ids for the trace's tid
  static std::atomic<uint32_t> next{0};
  thread_local uint32_t id = next++;
  return id;
}

struct Event {
  uint32_t row, tid;
  int64_t begin_ns, dur_ns, self_ns, bytes, items;
  double flops;
};

struct Recorder {
  std::mutex mutex;
  std::atomic<uint64_t> session{0};  // bumped by start(): spans begun before are not recorded
  std::vector<Row> rows;
  std::unordered_map<std::string, uint32_t> row_of;  // category byte + name -> rows index
  std::vector<Event> events;
  size_t max_events = 200000, dropped = 0;
  int64_t origin_ns = 0;              // ts 0 of the trace: the last start()
  int64_t wall_ns = 0, since_ns = 0;  // recorded time before the current piece, its start
  int64_t steps = 0, host_syncs = 0, parallel_regions = 0, parallel_items = 0, gemms = 0;
  double gemm_flops = 0;
  int64_t allocations = 0, alloc_bytes = 0, cache_hits = 0;

  uint32_t row_index(const char* name, Category category) {
    std::string key(1, static_cast<char>(category));
    key += name;
    auto found = row_of.find(key);
    if (found != row_of.end()) return found->second;
    uint32_t index = static_cast<uint32_t>(rows.size());
    Row row;
    row.name = name;
    row.category = category;
    rows.push_back(row);
    row_of.emplace(std::move(key), index);
    return index;
  }
};

// Never destroyed: spans may end while static objects are torn down at exit.
Recorder& recorder() {
  static Recorder* r = new Recorder();
  return *r;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) bytes /= 1024, ++unit;
  char text[32];
  std::snprintf(text, sizeof text, unit ? "%.1f %s" : "%.0f %s", bytes, units[unit]);
  return text;
}

std::string format_count(double n) {
  char text[32];
  if (n >= 1e9) {
    std::snprintf(text, sizeof text, "%.2fG", n / 1e9);
  } else if (n >= 1e6) {
    std::snprintf(text, sizeof text, "%.2fM", n / 1e6);
  } else if (n >= 1e4) {
    std::snprintf(text, sizeof text, "%.1fk", n / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.0f", n);
  }
  return text;
}

double ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

const char* category_name(Category category) {
  switch (category) {
    case Category::op: return "op";
    case Category::backward: return "backward";
    case Category::kernel: return "kernel";
    case Category::gemm: return "gemm";
    case Category::alloc: return "alloc";
    case Category::sync: return "sync";
    case Category::copy: return "copy";
    case Category::optimizer: return "optimizer";
    case Category::clip: return "clip";
    case Category::step: return "step";
    case Category::user: return "user";
  }
  return "user";
}

void ProfileScope::begin(const char* name, Category category) {
  active_ = true;
  name_ = name;
  category_ = category;
  parent_ = current_scope;
  current_scope = this;
  session_ = recorder().session.load(std::memory_order_relaxed);
  begin_ns_ = now_ns();
}

void ProfileScope::end() {
  const int64_t end_ns = now_ns(), duration = end_ns - begin_ns_;
  current_scope = parent_;
  if (parent_) parent_->child_ns_ += duration;
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!enabled() || session_ != r.session.load(std::memory_order_relaxed)) return;
  const int64_t self = std::max<int64_t>(duration - child_ns_, 0);
  const uint32_t index = r.row_index(name_, category_);
  Row& row = r.rows[index];
  row.count++;
  row.total_ns += duration;
  row.self_ns += self;
  row.bytes += bytes_;
  row.allocations += allocations_;
  row.items += items_;
  row.flops += flops_;
  if (category_ == Category::sync) {
    bool nested = false;  // item() -> to_vector() -> a device-to-host copy is one sync
    for (const ProfileScope* s = parent_; s && !nested; s = s->parent_) {
      nested = s->category_ == Category::sync;
    }
    if (!nested) r.host_syncs++;
  } else if (category_ == Category::kernel) {
    r.parallel_regions++;
    r.parallel_items += items_;
  } else if (category_ == Category::gemm) {
    r.gemms++;
    r.gemm_flops += flops_;
  }
  if (r.events.size() < r.max_events) {
    r.events.push_back({index, thread_number(), begin_ns_, duration, self, bytes_, items_, flops_});
  } else {
    r.dropped++;
  }
}

void record_allocation(size_t bytes, bool cache_hit) {
  if (!enabled()) return;
  if (current_scope) {
    current_scope->bytes_ += static_cast<int64_t>(bytes);
    current_scope->allocations_++;
  }
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.allocations++;
  r.alloc_bytes += static_cast<int64_t>(bytes);
  if (cache_hit) r.cache_hits++;
}

void start() {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  const size_t max_events = r.max_events;
  r.rows.clear();
  r.row_of.clear();
  r.events.clear();
  r.events.shrink_to_fit();
  r.max_events = max_events;
  r.dropped = 0;
  r.wall_ns = 0;
  r.steps = r.host_syncs = r.parallel_regions = r.parallel_items = r.gemms = 0;
  r.gemm_flops = 0;
  r.allocations = r.alloc_bytes = r.cache_hits = 0;
  r.session.fetch_add(1);
  r.origin_ns = r.since_ns = now_ns();
  detail::recording.store(true);
}

void stop() {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!detail::recording.load()) return;
  r.wall_ns += now_ns() - r.since_ns;
  detail::recording.store(false);
}

void resume() {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (detail::recording.load()) return;
  r.since_ns = now_ns();
  detail::recording.store(true);
}

bool is_recording() { return enabled(); }

void set_max_events(size_t max_events) {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.max_events = max_events;
}

void count_step() {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.steps++;
}

Summary summary() {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mutex);
  Summary s;
  s.steps = r.steps;
  s.wall_ns = r.wall_ns + (enabled() ? now_ns() - r.since_ns : 0);
  s.host_syncs = r.host_syncs;
  s.parallel_regions = r.parallel_regions;
  s.parallel_items = r.parallel_items;
  s.gemms = r.gemms;
  s.gemm_flops = r.gemm_flops;
  s.allocations = r.allocations;
  s.alloc_bytes = r.alloc_bytes;
  s.cache_hits = r.cache_hits;
  s.events = r.events.size();
  s.dropped_events = r.dropped;
  s.rows = r.rows;
  for (const Row& row : s.rows) {
    if (row.category != Category::step) s.in_spans_ns += row.self_ns;
  }
  std::stable_sort(s.rows.begin(), s.rows.end(),
                   [](const Row& a, const Row& b) { return a.self_ns > b.self_ns; });
  return s;
}

void report(std::ostream& out, size_t max_rows) {
  Summary s = summary();
  const double wall = std::max<double>(static_cast<double>(s.wall_ns), 1.0);
  char line[512];
  std::snprintf(line, sizeof line, "profile: %lld steps, %.1f ms", static_cast<long long>(s.steps),
                ms(s.wall_ns));
  out << line;
  if (s.steps > 0) {
    std::snprintf(line, sizeof line, " (%.2f ms/step)", ms(s.wall_ns) / s.steps);
    out << line;
  }
  std::snprintf(line, sizeof line, "; %.1f%% of it inside recorded ops, kernels and syncs\n",
                100.0 * s.in_spans_ns / wall);
  out << line;
  const double gemm_seconds = [&] {
    int64_t ns = 0;
    for (const Row& row : s.rows) {
      if (row.category == Category::gemm) ns += row.total_ns;
    }
    return std::max(static_cast<double>(ns) / 1e9, 1e-12);
  }();
  std::snprintf(line, sizeof line,
                "  host syncs %lld | parallel regions %lld (%s iterations) | GEMMs %lld (%.3g "
                "GFLOP, %.2f GFLOP/s)\n",
                static_cast<long long>(s.host_syncs), static_cast<long long>(s.parallel_regions),
                format_count(static_cast<double>(s.parallel_items)).c_str(),
                static_cast<long long>(s.gemms), s.gemm_flops / 1e9,
                s.gemms ? s.gemm_flops / 1e9 / gemm_seconds : 0.0);
  out << line;
  std::snprintf(line, sizeof line,
                "  allocations %lld (%s, %.1f%% from the cache) | trace events %zu (%zu dropped)\n",
                static_cast<long long>(s.allocations),
                format_bytes(static_cast<double>(s.alloc_bytes)).c_str(),
                s.allocations ? 100.0 * s.cache_hits / s.allocations : 0.0, s.events,
                s.dropped_events);
  out << line;
  out << "  self: time minus the spans recorded inside; share: self / wall; total includes nested "
         "spans; mean = total / calls\n";
  std::snprintf(line, sizeof line, "%-30s %-9s %8s %10s %6s %10s %10s %10s %s\n", "name", "kind",
                "calls", "self ms", "share", "total ms", "mean us", "alloc", "work");
  out << line;
  size_t shown = 0;
  for (const Row& row : s.rows) {
    if (shown++ == max_rows) {
      std::snprintf(line, sizeof line, "... %zu more rows\n", s.rows.size() - max_rows);
      out << line;
      break;
    }
    std::string name = row.name.size() > 30 ? row.name.substr(0, 27) + "..." : row.name;
    std::string work;
    if (row.flops > 0) {
      char text[64];
      std::snprintf(text, sizeof text, "%.2f GFLOP/s",
                    row.flops / std::max(static_cast<double>(row.total_ns), 1.0));
      work = text;
    } else if (row.items > 0) {
      work = format_count(static_cast<double>(row.items) / row.count) + " iters/call";
    }
    std::snprintf(line, sizeof line, "%-30s %-9s %8lld %10.2f %5.1f%% %10.2f %10.1f %10s %s\n",
                  name.c_str(), category_name(row.category), static_cast<long long>(row.count),
                  ms(row.self_ns), 100.0 * row.self_ns / wall, ms(row.total_ns),
                  static_cast<double>(row.total_ns) / 1e3 / row.count,
                  row.bytes ? format_bytes(static_cast<double>(row.bytes)).c_str() : "-",
                  work.c_str());
    out << line;
  }
}

void write_chrome_trace(const std::string& path) {
  Recorder& r = recorder();
  std::unique_lock<std::mutex> lock(r.mutex);
  std::vector<Event> events = r.events;
  std::vector<Row> rows = r.rows;
  const int64_t origin = r.origin_ns, dropped = static_cast<int64_t>(r.dropped), steps = r.steps;
  lock.unlock();
  // Parents before their children: by start, the longer first.
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return a.begin_ns != b.begin_ns ? a.begin_ns < b.begin_ns : a.dur_ns > b.dur_ns;
  });
  const int pid = 1;
  std::string text = "{\"traceEvents\":[\n";
  for (size_t k = 0; k < events.size(); ++k) {
    const Event& e = events[k];
    nlohmann::json args = {{"self_us", e.self_ns / 1e3}};
    if (e.bytes) args["bytes"] = e.bytes;
    if (e.items) args["iterations"] = e.items;
    if (e.flops > 0) args["flops"] = e.flops;
    nlohmann::json event = {{"name", rows[e.row].name},
                            {"cat", category_name(rows[e.row].category)},
                            {"ph", "X"},
                            {"ts", (e.begin_ns - origin) / 1e3},
                            {"dur", e.dur_ns / 1e3},
                            {"pid", pid},
                            {"tid", e.tid},
                            {"args", std::move(args)}};
    text += event.dump();
    text += k + 1 < events.size() ? ",\n" : "\n";
  }
  nlohmann::json other = {
      {"producer", "kiln profiler"}, {"steps", steps}, {"dropped_events", dropped}};
  text += "],\"displayTimeUnit\":\"ms\",\"otherData\":" + other.dump() + "}\n";
  durable_write(path, text, "profiler: trace");
}

int64_t steps_from_env() {
  const char* value = std::getenv("KILN_PROFILE");
  if (!value || !*value) return 0;
  const std::string text = value;
  KILN_CHECK(text.size() <= 9 && text.find_first_not_of("0123456789") == std::string::npos,
             "KILN_PROFILE='", text,
             "': expected the number of training steps to profile, a whole number >= 0 (e.g. "
             "KILN_PROFILE=20; 0 or unset: off)");
  return std::stoll(text);
}

std::string trace_path_from_env() {
  const char* value = std::getenv("KILN_PROFILE_OUT");
  return value ? value : "";
}

StepProfiler::StepProfiler(int64_t steps, std::string trace_path, int64_t warmup)
    : steps_(steps), warmup_(warmup), trace_path_(std::move(trace_path)) {
  KILN_CHECK(steps >= 0 && warmup >= 0, "profiler: steps and warm-up steps must be >= 0, got ",
             steps, " and ", warmup);
}

StepProfiler::~StepProfiler() {
  if (in_step_) stop();
}

void StepProfiler::begin_step() {
  if (!active()) return;
  ++seen_;
  if (seen_ <= warmup_) return;
  if (seen_ == warmup_ + 1) {
    start();
  } else {
    resume();
  }
  in_step_ = true;
}

bool StepProfiler::end_step(std::string& report) {
  if (!in_step_) return false;
  in_step_ = false;
  count_step();
  stop();
  return seen_ >= warmup_ + steps_ && complete(report);
}

bool StepProfiler::finish(std::string& report) {
  if (!active()) return false;
  if (in_step_) {  // a step that threw: not counted
    in_step_ = false;
    stop();
  }
  if (seen_ <= warmup_) {
    done_ = true;
    report = "profile: nothing profiled: the loop ended after " + std::to_string(seen_) +
             " steps, within the " + std::to_string(warmup_) + " warm-up steps";
    return true;
  }
  std::string table;
  complete(table);
  report = "profile: the loop ended after " + std::to_string(seen_ - warmup_) + " of " +
           std::to_string(steps_) + " profiled steps\n" + table;
  return true;
}

bool StepProfiler::complete(std::string& report) {
  done_ = true;
  std::ostringstream out;
  profiler::report(out);
  if (!trace_path_.empty()) {
    write_chrome_trace(trace_path_);
    out << "profile: trace written to " << trace_path_
        << " (open it in ui.perfetto.dev or chrome://tracing)\n";
  }
  report = out.str();
  if (!report.empty() && report.back() == '\n') report.pop_back();
  return true;
}

}  // namespace kiln::profiler
