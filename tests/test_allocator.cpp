// The caching allocator's policy, on a fake backing allocator with a byte budget (so it runs
// without a GPU), and on the real CUDA allocator when a device is visible.
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
  void release(void* ptr) override {
    used_ -= sizes_.at(ptr);
    sizes_.erase(ptr);
    ++releases;
    std::free(ptr);
  }
  int calls = 0, releases = 0;

 private:
  size_t budget_, used_ = 0;
  std::map<void*, size_t> sizes_;
};

TEST(CachingAllocator, RoundsToSizeClasses) {
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size((1 << 20) + 1), size_t(2) << 20);
  EXPECT_EQ(CachingAllocator::round_size(size_t(5) << 20), size_t(6) << 20);
}

TEST(CachingAllocator, ReusesFreedBlocksOfTheSameClass) {
  auto raw = std::make_unique<BudgetAllocator>(1 << 20);
  BudgetAllocator* fake = raw.get();
  CachingAllocator cache(std::move(raw), "test allocator");
  void* a = cache.allocate(1000);
  cache.free(a);
  void* b = cache.allocate(900);  // same 1024-byte class
  EXPECT_EQ(a, b);
  EXPECT_EQ(fake->calls, 1);
  AllocatorStats stats = cache.stats();
  EXPECT_EQ(stats.in_use, 1024u);
  EXPECT_EQ(stats.cached, 0u);
  EXPECT_EQ(stats.reuses, 1u);
  void* c = cache.allocate(5000);  // another class: a new block
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
  void* b = cache.allocate(6000);  // 6144 does not fit beside the cached block: release, retry
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
  EXPECT_EQ(cached.cached, CachingAllocator::round_size(4000000));
  Tensor again = empty({999, 1001}, gpu);  // same 2 MiB class
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
