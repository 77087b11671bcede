// The caching allocator's policy (best fit, split, merge, the cache limit, out of memory), on a
// fake backing allocator with a byte budget (so it runs without a GPU), and on the real CUDA
// allocator when a device is visible.
#include <cstdlib>
#include <cstring>
#include <random>

#include <unistd.h>

#include "test_util.h"

namespace kiln {
namespace {

class BudgetAllocator : public RawAllocator {
 public:
  explicit BudgetAllocator(size_t budget) : budget_(budget) {}
  void* allocate(size_t bytes) override {
    if (used_ + bytes > budget_) return nullptr;
    used_ += bytes;
    ++calls;
    void* ptr = std::malloc(bytes);
    sizes_[ptr] = bytes;
    return ptr;
  }
  void release(void* ptr, size_t bytes) override {
    EXPECT_EQ(sizes_.at(ptr), bytes);
    used_ -= sizes_.at(ptr);
    sizes_.erase(ptr);
    ++releases;
    std::free(ptr);
  }
  size_t used() const { return used_; }
  int calls = 0, releases = 0;

 private:
  size_t budget_, used_ = 0;
  std::map<void*, size_t> sizes_;
};

constexpr size_t kMiB = size_t(1) << 20;

TEST(CachingAllocator, RoundsRequestsAndSizesSegments) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(kMiB + 1), kMiB + 512);
  EXPECT_EQ(CachingAllocator::segment_size(512), 2 * kMiB);  // small pool
  EXPECT_EQ(CachingAllocator::segment_size(kMiB), 2 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(kMiB + 512), 20 * kMiB);       // shared large segment
  EXPECT_EQ(CachingAllocator::segment_size(10 * kMiB + 512), 12 * kMiB);  // its own
}

TEST(CachingAllocator, ReusesFreedBlocks) {
  // A 1 MiB budget has no room for a 2 MiB segment: each request gets a segment of its own size.
  auto raw = std::make_unique<BudgetAllocator>(1 << 20);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator");
  void* a = cache.allocate(1000);
  cache.free(a);
  void* b = cache.allocate(900);  // also 1024 bytes
  EXPECT_EQ(a, b);
  EXPECT_EQ(fake->calls, 1);
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.in_use, 1024u);
  EXPECT_EQ(stats.cached, 0u);
  EXPECT_EQ(stats.reuses, 1u);
  void* c = cache.allocate(5000);  // does not fit: a new segment
  EXPECT_NE(c, b);
  EXPECT_EQ(fake->calls, 2);
  cache.free(b);
  cache.free(c);
  stats = cache.stats();
  EXPECT_EQ(stats.in_use, 0u);
  EXPECT_EQ(stats.cached, 1024u + 5120u);
  EXPECT_EQ(stats.peak_in_use, 1024u + 5120u);
}

TEST(CachingAllocator, OutOfMemoryFreesTheCacheAndRetriesOnce) {
  auto raw = std::make_unique<BudgetAllocator>(8192);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator");
  void* a = cache.allocate(4096);
  cache.free(a);                   // 4096 cached
  void* b = cache.allocate(6000);  // 6144 does not fit beside the idle segment: release, retry
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(fake->releases, 1);
  EXPECT_EQ(cache.stats().cached, 0u);
  cache.free(b);
}

TEST(CachingAllocator, OutOfMemoryAfterRetryIsAClearError) {
  CachingAllocator cache(std::make_unique<BudgetAllocator>(4096), "test allocator");
  void* a = cache.allocate(4096);
  try {
    cache.allocate(100);
    FAIL() << "expected out of memory";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("test allocator: out of memory allocating 100 bytes"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("4096 bytes in use"), std::string::npos) << msg;
  }
  cache.free(a);
}

TEST(CachingAllocator, RejectsForeignPointers) {
  CachingAllocator cache(std::make_unique<BudgetAllocator>(4096), "test allocator");
  int on_stack = 0;
  EXPECT_THROW(cache.free(&on_stack), Error);
}

TEST(CachingAllocator, BestFitTakesTheSmallestFreeBlockThatFits) {
  CachingAllocator cache(std::make_unique<BudgetAllocator>(64 * kMiB), "test allocator");
  // One 2 MiB segment cut into free holes of 4096, 2048 and 8192 bytes kept apart by live blocks.
  void* a = cache.allocate(4096);
  void* wall1 = cache.allocate(512);
  void* b = cache.allocate(2048);
  void* wall2 = cache.allocate(512);
  void* c = cache.allocate(8192);
  void* wall3 = cache.allocate(512);
  EXPECT_EQ(cache.stats().segments, 1u);
  cache.free(a);
  cache.free(b);
  cache.free(c);
  void* b2 = cache.allocate(2000);
  void* a2 = cache.allocate(3000);
  void* c2 = cache.allocate(5000);
  void* rest = cache.allocate(1000);
  EXPECT_EQ(b2, b);  // the 2048 hole, not the 4096 one nor the segment's tail
  EXPECT_EQ(a2, a);  // 3072 from the 4096 hole (its last 1024 split off)
  EXPECT_EQ(c2, c);
  EXPECT_EQ(rest, static_cast<char*>(a) + 3072);  // the 1024 left of a
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.reuses, 9u);  // all but the first request: 5 from the tail, 4 from holes
  EXPECT_EQ(stats.raw_allocs, 1u);
  // Every block back, so the segment is idle and goes back with the allocator.
  for (void* p : {wall1, wall2, wall3, b2, a2, c2, rest}) cache.free(p);
}

TEST(CachingAllocator, SplitThenMergeGivesBackOneBlock) {
  auto raw = std::make_unique<BudgetAllocator>(64 * kMiB);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator");
  void* x = cache.allocate(1000);
  void* y = cache.allocate(1000);
  void* z = cache.allocate(1000);
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.segments, 1u);
  EXPECT_EQ(stats.splits, 3u);
  EXPECT_EQ(stats.in_use, 3u * 1024);
  EXPECT_EQ(stats.cached, 2 * kMiB - 3 * 1024);
  EXPECT_EQ(stats.fragmented, stats.cached);  // the tail shares the segment with live blocks
  cache.free(y);                              // no free neighbour yet
  cache.free(x);                              // merges with y
  cache.free(z);                              // merges with x+y and with the tail
  stats = cache.stats();
  EXPECT_EQ(stats.merges, 3u);
  EXPECT_EQ(stats.in_use, 0u);
  EXPECT_EQ(stats.cached, 2 * kMiB);
  EXPECT_EQ(stats.fragmented, 0u);
  EXPECT_EQ(cache.allocate(kMiB), x);  // one block again: the largest small request fits at x
  cache.free(x);
  cache.empty_cache();
  stats = cache.stats();
  EXPECT_EQ(stats.releases, 1u);
  EXPECT_EQ(stats.segments, 0u);
  EXPECT_EQ(stats.cached, 0u);
  EXPECT_EQ(fake->used(), 0u);
}

TEST(CachingAllocator, OverTheLimitTheLongestIdleSegmentGoesFirst) {
  auto raw = std::make_unique<BudgetAllocator>(256 * kMiB);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator", 40 * kMiB);
  void* a = cache.allocate(15 * kMiB);  // each in a 16 MiB segment of its own
  void* b = cache.allocate(15 * kMiB);
  void* c = cache.allocate(15 * kMiB);
  cache.free(a);
  cache.free(c);
  EXPECT_EQ(cache.stats().releases, 0u);  // 32 MiB cached, under 40
  cache.free(b);                          // 48 MiB: a's segment, idle the longest, goes
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.releases, 1u);
  EXPECT_EQ(stats.cached, 32 * kMiB);
  EXPECT_EQ(fake->used(), 32 * kMiB);
  std::set<void*> kept = {cache.allocate(15 * kMiB), cache.allocate(15 * kMiB)};
  EXPECT_EQ(kept, (std::set<void*>{b, c}));
  EXPECT_EQ(cache.stats().raw_allocs, 3u);
  for (void* p : kept) cache.free(p);
}

TEST(CachingAllocator, ZeroLimitCachesNothing) {
  auto raw = std::make_unique<BudgetAllocator>(256 * kMiB);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator", 0);
  void* a = cache.allocate(1000);
  void* b = cache.allocate(3 * kMiB);
  EXPECT_EQ(fake->used(), 1024 + 3 * kMiB);  // segments of the requests' own sizes
  cache.free(a);
  cache.free(b);
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.cached, 0u);
  EXPECT_EQ(stats.releases, 2u);
  EXPECT_EQ(fake->used(), 0u);
}

// Random requests of varied sizes (small, shared-segment large, own-segment large) and frees in
// random order: every block is filled with its own byte and checked when freed (no overlap, no
// corruption), the books balance against the backing allocator, and the cache obeys the limit.
void random_workload(size_t limit, int steps) {
  auto raw = std::make_unique<BudgetAllocator>(size_t(1) << 32);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator", limit);
  std::mt19937 rng(7);
  struct Live {
    char* ptr;
    size_t bytes;
    unsigned char fill;
  };
  std::vector<Live> live;
  std::map<char*, size_t> by_address;
  auto intact = [](const Live& l) {
    return static_cast<unsigned char>(l.ptr[0]) == l.fill &&
           std::memcmp(l.ptr, l.ptr + 1, l.bytes - 1) == 0;
  };
  for (int step = 0; step < steps; ++step) {
    if (live.size() < 40 && (live.empty() || rng() % 2 == 0)) {
      int kind = rng() % 20;
      size_t bytes = kind < 12   ? 1 + rng() % 65536
                     : kind < 19 ? 65536 + rng() % (3 * kMiB)
                                 : 10 * kMiB + rng() % (4 * kMiB);
      auto* ptr = static_cast<char*>(cache.allocate(bytes));
      auto after = by_address.lower_bound(ptr);
      ASSERT_TRUE(after == by_address.end() || ptr + bytes <= after->first) << "step " << step;
      if (after != by_address.begin()) {
        auto before = std::prev(after);
        ASSERT_LE(before->first + before->second, ptr) << "step " << step;
      }
      Live l{ptr, bytes, static_cast<unsigned char>(step)};
      std::memset(ptr, l.fill, bytes);
      live.push_back(l);
      by_address[ptr] = bytes;
    } else {
      size_t i = rng() % live.size();
      ASSERT_TRUE(intact(live[i])) << "step " << step << ": a block was overwritten";
      cache.free(live[i].ptr);
      by_address.erase(live[i].ptr);
      live[i] = live.back();
      live.pop_back();
    }
    AllocatorStats s = cache.stats();
    ASSERT_EQ(s.in_use + s.cached, fake->used()) << "step " << step;
    ASSERT_LE(s.cached - s.fragmented, limit) << "step " << step;  // idle segments
    ASSERT_LE(s.cached, std::max(limit, s.fragmented)) << "step " << step;
    ASSERT_LE(s.fragmented, s.cached);
  }
  for (const Live& l : live) {
    ASSERT_TRUE(intact(l));
    cache.free(l.ptr);
  }
  AllocatorStats s = cache.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_LE(s.cached, limit);
  EXPECT_EQ(s.fragmented, 0u);
  if (limit > 0) {  // with no cache every segment is its request's size: nothing to split
    EXPECT_GT(s.splits, 0u);
    EXPECT_GT(s.merges, 0u);
  }
  cache.empty_cache();
  EXPECT_EQ(fake->used(), 0u);
  EXPECT_EQ(cache.stats().segments, 0u);
}

TEST(CachingAllocator, LimitHoldsUnderRandomRequests) {
  random_workload(16 * kMiB, 3000);
  random_workload(64 * kMiB, 3000);
}

TEST(CachingAllocator, ZeroLimitHoldsUnderRandomRequests) { random_workload(0, 1000); }

// The translator's pattern: a few long-lived blocks (parameters), then batches of varying shapes,
// each allocating its activations and freeing them all, epoch after epoch. Held memory reaches
// its high-water mark in the first epoch and stays there; the old allocator (a free list per size
// class, never released) kept a block of every shape it had seen.
TEST(CachingAllocator, VaryingBatchShapesKeepHeldMemoryFlat) {
  for (size_t limit : {CachingAllocator::kNoLimit, 32 * kMiB}) {
    auto raw = std::make_unique<BudgetAllocator>(size_t(1) << 32);
    BudgetAllocator* fake = raw.get();
    CachingAllocator cache(std::move(raw), "test allocator", limit);
    std::vector<void*> parameters;
    for (size_t bytes : {4 * kMiB, 3 * kMiB, size_t{300000}, size_t{1000}, size_t{1000}}) {
      parameters.push_back(cache.allocate(bytes));
    }
    std::mt19937 rng(3);
    std::vector<std::pair<size_t, size_t>> shapes;  // (time steps, batch)
    for (int i = 0; i < 40; ++i) shapes.emplace_back(5 + rng() % 40, 8 + rng() % 120);
    std::vector<size_t> held_after_epoch;
    for (int epoch = 0; epoch < 6; ++epoch) {
      std::shuffle(shapes.begin(), shapes.end(), rng);
      for (auto [steps, batch] : shapes) {
        std::vector<void*> activations;
        for (size_t t = 0; t < steps; ++t) {
          activations.push_back(cache.allocate(batch * 256 * 4));  // a hidden state
          activations.push_back(cache.allocate(batch * 768 * 4));  // its gates
        }
        activations.push_back(cache.allocate(steps * batch * 7545 * 4));  // the logits
        for (void* p : activations) cache.free(p);
      }
      AllocatorStats s = cache.stats();
      held_after_epoch.push_back(s.peak_held);
      EXPECT_EQ(s.held(), fake->used());
      EXPECT_LE(s.cached - s.fragmented, limit);
    }
    for (int epoch = 1; epoch < 6; ++epoch) {
      EXPECT_EQ(held_after_epoch[epoch], held_after_epoch[0])
          << "limit " << limit << ", epoch " << epoch + 1;
    }
    for (void* p : parameters) cache.free(p);
  }
}

// limit_to_working_set: the cap on cached bytes is the most bytes ever in use at once, at least
// the floor and at most the limit given; reset_peak does not lower it.
TEST(CachingAllocator, WorkingSetLimitFollowsTheMostBytesEverInUse) {
  auto raw = std::make_unique<BudgetAllocator>(size_t(1) << 32);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator", 100 * kMiB);
  EXPECT_EQ(cache.stats().limit, 100 * kMiB);
  cache.limit_to_working_set(4 * kMiB);
  EXPECT_EQ(cache.stats().limit, 4 * kMiB);  // nothing in use yet: the floor
  void* a = cache.allocate(30 * kMiB);
  void* b = cache.allocate(20 * kMiB);
  EXPECT_EQ(cache.stats().limit, 50 * kMiB);
  cache.free(a);
  cache.free(b);
  EXPECT_EQ(cache.stats().cached, 50 * kMiB);  // both segments kept: within the working set
  cache.reset_peak();
  EXPECT_EQ(cache.stats().limit, 50 * kMiB);
  // A 40 MiB request fits the 30 + 20 MiB of idle segments only as a new segment: the cache
  // would hold 90 MiB, so the longest idle segment goes back once the new block is freed.
  void* c = cache.allocate(40 * kMiB);
  cache.free(c);
  AllocatorStats s = cache.stats();
  EXPECT_LE(s.cached, 50 * kMiB);
  EXPECT_EQ(s.held(), fake->used());
  EXPECT_GE(s.releases, 1u);
  // The limit given still caps it.
  void* big = cache.allocate(150 * kMiB);
  EXPECT_EQ(cache.stats().limit, 100 * kMiB);
  cache.free(big);
  EXPECT_LE(cache.stats().cached, 100 * kMiB);
}

// The translator's pattern again (above): with the cap following the working set, the cache
// keeps at most the working set's bytes free, where a fixed generous cap lets it hold segments
// that fit only some batch shapes, several times the working set.
TEST(CachingAllocator, WorkingSetLimitKeepsVaryingShapesWithinTheWorkingSet) {
  size_t held_fixed = 0, held_following = 0;
  for (bool follow : {false, true}) {
    auto raw = std::make_unique<BudgetAllocator>(size_t(1) << 34);
    CachingAllocator cache(std::move(raw), "test allocator", size_t(1) << 33);
    if (follow) cache.limit_to_working_set(kMiB);
    std::mt19937 rng(5);
    size_t most_in_use = 0;
    for (int step = 0; step < 400; ++step) {
      size_t steps = 5 + rng() % 40, batch = 8 + rng() % 120;
      std::vector<void*> activations;
      activations.push_back(cache.allocate(steps * batch * 7545 * 4));  // the logits
      activations.push_back(cache.allocate(steps * batch * 7545 * 4));  // and their gradient
      most_in_use = std::max(most_in_use, cache.stats().in_use);
      for (void* p : activations) cache.free(p);
      AllocatorStats s = cache.stats();
      if (follow) {
        ASSERT_LE(s.cached, most_in_use) << "step " << step;
      }
    }
    (follow ? held_following : held_fixed) = cache.stats().peak_held;
    if (follow) {
      EXPECT_LE(held_following, 2 * most_in_use);
    }
  }
  EXPECT_LT(held_following, held_fixed);
}

TEST(CacheLimit, ParsesBytesUnitsAndPercentages) {
  EXPECT_EQ(parse_cache_limit("0", 1000), 0u);
  EXPECT_EQ(parse_cache_limit("123456", 1000), 123456u);
  EXPECT_EQ(parse_cache_limit("512K", 1000), 512u * 1024);
  EXPECT_EQ(parse_cache_limit("256m", 1000), 256u * kMiB);
  EXPECT_EQ(parse_cache_limit("2G", 1000), size_t(2) << 30);
  EXPECT_EQ(parse_cache_limit("2GiB", 1000), size_t(2) << 30);
  EXPECT_EQ(parse_cache_limit("1.5G", 1000), size_t(3) << 29);
  EXPECT_EQ(parse_cache_limit("10%", 8000), 800u);
  EXPECT_EQ(parse_cache_limit("12.5%", 8000), 1000u);
  EXPECT_EQ(parse_cache_limit("100%", 8000), 8000u);
  EXPECT_EQ(parse_cache_limit("0%", 8000), 0u);
}

TEST(CacheLimit, BadValuesNameTheVariableAndTheText) {
  for (const char* bad : {"", "abc", "10X", "-5", " 5", "1e9", "150%", "%", ".", "5 M", "1.2.3",
                          "99999999999999999999999"}) {
    try {
      parse_cache_limit(bad, 1000);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("KILN_CACHE_LIMIT=\"") + bad + "\""), std::string::npos)
          << msg;
    }
  }
}

TEST(CacheLimit, EnvironmentOverridesTheDefault) {
  ASSERT_EQ(unsetenv("KILN_CACHE_LIMIT"), 0);
  EXPECT_EQ(cache_limit_for(8000, 8), 1000u);
  ASSERT_EQ(setenv("KILN_CACHE_LIMIT", "25%", 1), 0);
  EXPECT_EQ(cache_limit_for(8000, 8), 2000u);
  ASSERT_EQ(setenv("KILN_CACHE_LIMIT", "64M", 1), 0);
  EXPECT_EQ(cache_limit_for(8000, 8), 64 * kMiB);
  ASSERT_EQ(setenv("KILN_CACHE_LIMIT", "lots", 1), 0);
  EXPECT_THROW(cache_limit_for(8000, 8), Error);
  unsetenv("KILN_CACHE_LIMIT");
}

TEST(CpuAllocator, StatsReportTheHostCache) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer builds bypass the host cache";
#endif
  AllocatorStats before = memory_stats(Device::cpu());
  {
    Tensor t = empty({1000, 1000}, Device::cpu());
    AllocatorStats during = memory_stats(Device::cpu());
    EXPECT_GE(during.in_use, before.in_use + 4000000);
  }
  AllocatorStats after = memory_stats(Device::cpu());
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.held(), after.in_use + after.cached);
  empty_cpu_cache();
  EXPECT_EQ(memory_stats(Device::cpu()).cached, memory_stats(Device::cpu()).fragmented);
}

// Without KILN_CACHE_LIMIT the host cache's cap follows the working set: at least 64 MiB, and a
// tensor larger than that raises it to the bytes in use.
TEST(CpuAllocator, DefaultLimitFollowsTheWorkingSet) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer builds bypass the host cache";
#endif
  if (std::getenv("KILN_CACHE_LIMIT")) {
    GTEST_SKIP() << "KILN_CACHE_LIMIT is set: a fixed cap";
  }
  size_t ram = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE));
  if (ram / 8 < (size_t(1) << 30)) {
    GTEST_SKIP() << "under 8 GiB of RAM";
  }
  AllocatorStats before = memory_stats(Device::cpu());
  EXPECT_GE(before.limit, size_t(64) << 20);
  EXPECT_LT(before.limit, ram / 8);  // the tests before this one used far less than 1 GiB
  Tensor t = empty({50, 1000, 1000}, Device::cpu());  // 200 MB
  AllocatorStats s = memory_stats(Device::cpu());
  EXPECT_GE(s.limit, s.in_use);
  EXPECT_LE(s.limit, ram / 8);
}

TEST(CudaAllocator, TensorsReuseCachedBlocks) {
  KILN_REQUIRE_GPU();
  Device gpu = Device::cuda();
  empty_cuda_cache();
  AllocatorStats before = memory_stats(gpu);
  const void* first;
  {
    Tensor t = empty({1000, 1000}, gpu);
    first = t.raw_data();
  }
  AllocatorStats cached = memory_stats(gpu);
  size_t segment = CachingAllocator::segment_size(CachingAllocator::round_size(4000000));
  EXPECT_EQ(cached.cached - before.cached, segment);  // the freed block merged back
  Tensor again = empty({999, 1001}, gpu);             // the best fit is the block just freed
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(memory_stats(gpu).raw_allocs, before.raw_allocs + 1);
}

TEST(CudaAllocator, HugeRequestIsAClearError) {
  KILN_REQUIRE_GPU();
  try {
    empty({int64_t(1) << 50}, Device::cuda());
    FAIL() << "expected out of memory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  Tensor still_works = ones({4}, Device::cuda());  // the failed request left the device usable
  EXPECT_EQ(sum(still_works).item(), 4.0);
}

}  // namespace
}  // namespace kiln
