// The profiler (core/profiler.h): off by default; a known sequence of ops records the expected
// names and counts (forward ops, backward nodes, GEMMs with their FLOPs, parallel regions, host
// syncs, allocations); nested spans split self from total time; the Chrome trace parses and its
// event cap holds; StepProfiler's warm-up and steps; bad KILN_PROFILE / --profile values are
// errors naming them; `kiln train --profile` prints the table and writes the trace.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "cli_util.h"
#include "kernels/gemm.h"
#include "kernels/parallel_for.h"
#include "models/seq2seq/options.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using profiler::Category;

std::string read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const profiler::Row* find_row(const profiler::Summary& s, const std::string& name,
                              Category category) {
  for (const profiler::Row& row : s.rows) {
    if (row.name == name && row.category == category) return &row;
  }
  return nullptr;
}

// relu(x w) summed, and its backward: x [64, 32] (no grad), w [32, 48] (grad).
void matmul_relu_backward() {
  manual_seed(7);
  Tensor x = normal({64, 32}, 0, 1);
  Tensor w = uniform({32, 48}, -0.1, 0.1).set_requires_grad(true);
  backward(sum(relu(matmul(x, w))));
}

TEST(Profiler, OffByDefaultRecordsNothing) {
  EXPECT_FALSE(profiler::is_recording());
  matmul_relu_backward();
  profiler::Summary s = profiler::summary();
  EXPECT_TRUE(s.rows.empty());
  EXPECT_EQ(s.events, 0u);
  EXPECT_EQ(s.allocations, 0);
  {  // a scope made while off records nothing even if the profiler starts before it ends
    profiler::ProfileScope scope("made while off", Category::user);
    profiler::start();
  }
  profiler::stop();
  EXPECT_TRUE(profiler::summary().rows.empty());
}

TEST(Profiler, RecordsOpsBackwardNodesAndGemms) {
  profiler::start();
  matmul_relu_backward();
  profiler::stop();
  profiler::Summary s = profiler::summary();
  // matmul's backward is itself a matmul (w's gradient), recorded inside the backward node.
  struct Expected {
    const char* name;
    int64_t forward_calls;
  };
  for (const Expected& e : {Expected{"matmul", 2}, Expected{"relu", 1}, Expected{"sum", 1}}) {
    SCOPED_TRACE(e.name);
    const profiler::Row* forward = find_row(s, e.name, Category::op);
    const profiler::Row* backward = find_row(s, e.name, Category::backward);
    ASSERT_NE(forward, nullptr);
    ASSERT_NE(backward, nullptr);
    EXPECT_EQ(forward->count, e.forward_calls);
    EXPECT_EQ(backward->count, 1);
  }
  const profiler::Row* engine = find_row(s, "backward (engine)", Category::backward);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->count, 1);
  // One GEMM forward, one for w's gradient (x needs none): 2 * 64 * 48 * 32 FLOPs each.
  EXPECT_EQ(s.gemms, 2);
  EXPECT_DOUBLE_EQ(s.gemm_flops, 2 * 2.0 * 64 * 48 * 32);
  for (const profiler::Row& row : s.rows) {
    SCOPED_TRACE(row.name);
    EXPECT_LE(row.self_ns, row.total_ns);
    EXPECT_GE(row.self_ns, 0);
  }
  // Rows come longest self time first; the wall time covers what the spans recorded.
  for (size_t k = 1; k < s.rows.size(); ++k) EXPECT_GE(s.rows[k - 1].self_ns, s.rows[k].self_ns);
  EXPECT_LE(s.in_spans_ns, s.wall_ns);
  std::ostringstream table;
  profiler::report(table);
  EXPECT_CONTAINS(table.str(), "profile: 0 steps");
  EXPECT_CONTAINS(table.str(), "GEMMs 2");
  EXPECT_CONTAINS(table.str(), "self ms");
  EXPECT_CONTAINS(table.str(), "matmul");
  EXPECT_CONTAINS(table.str(), "GFLOP/s");
}

TEST(Profiler, NestedSpansSplitSelfFromTotal) {
  profiler::start();
  {
    profiler::ProfileScope outer("outer", Category::user);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (int k = 0; k < 2; ++k) {
      profiler::ProfileScope inner("inner", Category::user);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  profiler::stop();
  profiler::Summary s = profiler::summary();
  const profiler::Row* outer = find_row(s, "outer", Category::user);
  const profiler::Row* inner = find_row(s, "inner", Category::user);
  ASSERT_NE(outer, nullptr);
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->count, 2);
  EXPECT_GE(inner->total_ns, 10'000'000);
  EXPECT_EQ(inner->self_ns, inner->total_ns);
  EXPECT_EQ(outer->self_ns, outer->total_ns - inner->total_ns);  // exact: no double counting
  EXPECT_GE(outer->self_ns, 2'000'000);
  EXPECT_EQ(s.in_spans_ns, outer->total_ns);
  EXPECT_GE(s.wall_ns, outer->total_ns);
}

TEST(Profiler, CountsAllocationsBytesAndCacheHits) {
  AllocatorStats before = memory_stats(Device::cpu());
  profiler::start();
  {
    profiler::ProfileScope scope("allocating", Category::user);
    { Tensor a = empty({1000}); }  // 4000 bytes, rounded to 4096, then back to the cache
    Tensor b = empty({1000});      // the same size class: served from the cache
  }
  profiler::stop();
  AllocatorStats after = memory_stats(Device::cpu());
  profiler::Summary s = profiler::summary();
  EXPECT_EQ(s.allocations, 2);
  EXPECT_GE(s.alloc_bytes, 8000);
  const profiler::Row* row = find_row(s, "allocating", Category::user);
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->allocations, 2);
  EXPECT_EQ(row->bytes, s.alloc_bytes);
  // The host cache (off under AddressSanitizer, whose stats stay zero) saw what the profiler saw.
  size_t served = (after.raw_allocs - before.raw_allocs) + (after.reuses - before.reuses);
  if (served > 0) {
    EXPECT_EQ(static_cast<size_t>(s.allocations), served);
    EXPECT_EQ(static_cast<size_t>(s.cache_hits), after.reuses - before.reuses);
    EXPECT_GE(s.cache_hits, 1);
  }
}

TEST(Profiler, CountsHostSyncsAndParallelRegions) {
  const int64_t n = 2 * kParallelGrain;  // above the grain: one OpenMP region per pointwise op
  Tensor big = ones({n});
  Tensor scalar = full({}, 3.0);
  profiler::start();
  Tensor y = relu(big);
  double value = scalar.item();  // item() -> to_vector(): one host sync, not two
  profiler::stop();
  EXPECT_EQ(value, 3.0);
  profiler::Summary s = profiler::summary();
  EXPECT_EQ(s.host_syncs, 1);
  EXPECT_GE(s.parallel_regions, 1);
  EXPECT_GE(s.parallel_items, n);
  const profiler::Row* region = find_row(s, "parallel_for", Category::kernel);
  ASSERT_NE(region, nullptr);
  EXPECT_EQ(region->items, n * region->count);
}

TEST(Profiler, ChromeTraceParsesWithCompleteEvents) {
  fs::path dir = testing::temp_dir("profiler_trace"), file = dir / "trace.json";
  fs::create_directories(dir);
  profiler::start();
  matmul_relu_backward();
  profiler::stop();
  profiler::write_chrome_trace(file.string());
  nlohmann::json trace = nlohmann::json::parse(read(file));
  const nlohmann::json& events = trace.at("traceEvents");
  ASSERT_EQ(events.size(), profiler::summary().events);
  ASSERT_GT(events.size(), 10u);
  double last_ts = 0;
  std::set<std::string> names;
  for (const nlohmann::json& e : events) {
    EXPECT_EQ(e.at("ph"), "X");
    EXPECT_GE(e.at("ts").get<double>(), last_ts);  // sorted by start
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
    EXPECT_TRUE(e.at("pid").is_number_integer());
    EXPECT_TRUE(e.at("tid").is_number_integer());
    EXPECT_TRUE(e.at("args").contains("self_us"));
    last_ts = e.at("ts").get<double>();
    names.insert(e.at("cat").get<std::string>() + ":" + e.at("name").get<std::string>());
  }
  // x w is [64, 32] x [32, 48]: libxsmm's when kiln has it, else OpenBLAS's.
  const std::string gemm = kernels::built_with_libxsmm() ? "gemm:gemm (libxsmm)" : "gemm:gemm (OpenBLAS)";
  for (const std::string& name : {std::string("op:matmul"), std::string("backward:matmul"),
                                  std::string("op:relu"), gemm}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  EXPECT_EQ(trace.at("otherData").at("dropped_events"), 0);
  EXPECT_THROW(profiler::write_chrome_trace((dir / "no" / "such" / "t.json").string()), Error);
  fs::remove_all(dir);
}

TEST(Profiler, EventCapDropsEventsButKeepsTheCounts) {
  fs::path dir = testing::temp_dir("profiler_cap"), file = dir / "trace.json";
  fs::create_directories(dir);
  profiler::set_max_events(5);
  profiler::start();
  for (int k = 0; k < 20; ++k) profiler::ProfileScope scope("capped", Category::user);
  profiler::stop();
  profiler::set_max_events(200000);
  profiler::Summary s = profiler::summary();
  EXPECT_EQ(s.events, 5u);
  EXPECT_EQ(s.dropped_events, 15u);
  ASSERT_EQ(s.rows.size(), 1u);
  EXPECT_EQ(s.rows[0].count, 20);
  profiler::write_chrome_trace(file.string());
  nlohmann::json trace = nlohmann::json::parse(read(file));
  EXPECT_EQ(trace.at("traceEvents").size(), 5u);
  EXPECT_EQ(trace.at("otherData").at("dropped_events"), 15);
  std::ostringstream table;
  profiler::report(table);
  EXPECT_CONTAINS(table.str(), "trace events 5 (15 dropped)");
  fs::remove_all(dir);
}

TEST(Profiler, StepProfilerWarmsUpThenProfilesTheSteps) {
  fs::path dir = testing::temp_dir("profiler_steps"), file = dir / "steps.json";
  fs::create_directories(dir);
  std::string table;
  int reported_at = 0;
  {
    profiler::StepProfiler steps(3, file.string(), 2);
    for (int step = 1; step <= 8; ++step) {
      steps.begin_step();
      {
        profiler::ProfileScope scope("my step", Category::step);
        Tensor t = relu(full({4}, 1.0));
      }
      std::string text;
      if (steps.end_step(text)) reported_at = step, table = text;
      EXPECT_FALSE(profiler::is_recording());  // only inside the profiled steps
    }
    EXPECT_FALSE(steps.finish(table));  // already reported
  }
  EXPECT_EQ(reported_at, 5);
  profiler::Summary s = profiler::summary();
  EXPECT_EQ(s.steps, 3);
  const profiler::Row* step = find_row(s, "my step", Category::step);
  ASSERT_NE(step, nullptr);
  EXPECT_EQ(step->count, 3);
  EXPECT_EQ(find_row(s, "relu", Category::op)->count, 3);
  EXPECT_CONTAINS(table, "profile: 3 steps");
  EXPECT_CONTAINS(table, "trace written to " + file.string());
  EXPECT_TRUE(fs::exists(file));

  profiler::StepProfiler short_run(5, "", 2);  // the loop ends after 4 steps
  for (int step = 1; step <= 4; ++step) {
    short_run.begin_step();
    std::string text;
    EXPECT_FALSE(short_run.end_step(text));
  }
  ASSERT_TRUE(short_run.finish(table));
  EXPECT_CONTAINS(table, "the loop ended after 2 of 5 profiled steps");
  EXPECT_CONTAINS(table, "profile: 2 steps");
  profiler::StepProfiler off(0, "");
  off.begin_step();
  EXPECT_FALSE(profiler::is_recording());
  EXPECT_FALSE(off.finish(table));
  fs::remove_all(dir);
}

TEST(Profiler, KilnProfileVariableIsParsedOrNamedInTheError) {
  struct Case {
    const char* value;
    int64_t steps;
  };
  for (const Case& c : {Case{"", 0}, Case{"0", 0}, Case{"1", 1}, Case{"25", 25}}) {
    ::setenv("KILN_PROFILE", c.value, 1);
    EXPECT_EQ(profiler::steps_from_env(), c.steps) << c.value;
  }
  for (const char* bad : {"abc", "-1", "2.5", "1e3", "9999999999"}) {
    SCOPED_TRACE(bad);
    ::setenv("KILN_PROFILE", bad, 1);
    try {
      profiler::steps_from_env();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_CONTAINS(e.what(), std::string("KILN_PROFILE='") + bad + "'");
      EXPECT_CONTAINS(e.what(), "number of training steps");
    }
  }
  ::unsetenv("KILN_PROFILE");
  EXPECT_EQ(profiler::steps_from_env(), 0);
  ::setenv("KILN_PROFILE_OUT", "/tmp/x.json", 1);
  EXPECT_EQ(profiler::trace_path_from_env(), "/tmp/x.json");
  ::unsetenv("KILN_PROFILE_OUT");
  EXPECT_EQ(profiler::trace_path_from_env(), "");
}

// A tiny generated task: 52 training pairs in batches of 12, 5 steps an epoch.
std::string tiny_run(const fs::path& out) {
  return "train --task reverse --task-size 60 --seed 3 --valid-pairs 8 --batch 12 --hidden 8 "
         "--embed 4 --quiet --epochs 2 --out " +
         out.string();
}

TEST(Profiler, KilnTrainProfilePrintsTheTableAndWritesTheTrace) {
  fs::path dir = testing::temp_dir("profiler_cli"), out = dir / "out", log = dir / "log.txt";
  fs::create_directories(dir);
  ASSERT_EQ(testing::run_kiln(tiny_run(out) + " --profile 3", log.string()), 0) << read(log);
  std::string text = read(log);
  EXPECT_CONTAINS(text, "profile: recording steps 3-5 of this run (after 2 warm-up steps)");
  EXPECT_CONTAINS(text, "profile: 3 steps");
  EXPECT_CONTAINS(text, "train step");
  EXPECT_CONTAINS(text, "gru_layer");
  EXPECT_CONTAINS(text, "trace written to " + (out / "profile.json").string());
  EXPECT_CONTAINS(text, "epoch 2: train loss");  // the run went on
  nlohmann::json trace = nlohmann::json::parse(read(out / "profile.json"));
  int steps = 0;
  for (const nlohmann::json& e : trace.at("traceEvents")) steps += e.at("cat") == "step";
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(trace.at("otherData").at("steps"), 3);
  fs::remove_all(dir);
}

TEST(Profiler, KilnProfileVariableAndEarlyEnd) {
  fs::path dir = testing::temp_dir("profiler_env"), out = dir / "out", log = dir / "log.txt";
  fs::create_directories(dir);
  ::setenv("KILN_PROFILE", "50", 1);
  ::setenv("KILN_PROFILE_OUT", (dir / "env.json").c_str(), 1);
  int code = testing::run_kiln(tiny_run(out), log.string());
  ::unsetenv("KILN_PROFILE_OUT");
  ASSERT_EQ(code, 0) << read(log);
  EXPECT_CONTAINS(read(log), "profile: the loop ended after 8 of 50 profiled steps");
  EXPECT_TRUE(nlohmann::json::parse(read(dir / "env.json")).contains("traceEvents"));

  ::setenv("KILN_PROFILE", "abc", 1);
  code = testing::run_kiln(tiny_run(dir / "out2"), log.string());
  ::unsetenv("KILN_PROFILE");
  EXPECT_NE(code, 0);
  EXPECT_CONTAINS(read(log), "KILN_PROFILE='abc': expected the number of training steps");
  EXPECT_FALSE(fs::exists(dir / "out2"));

  EXPECT_NE(testing::run_kiln(tiny_run(dir / "out3") + " --profile -1", log.string()), 0);
  EXPECT_CONTAINS(read(log), "--profile: must be >= 0, got '-1'");
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.profile_steps = -1;
  EXPECT_THROW(o.validate(), Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln
