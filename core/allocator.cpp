#include "core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/cuda_runtime.h"
#include "core/error.h"
#include "core/profiler.h"
#include "core/shape.h"

#ifdef KILN_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace kiln {

namespace {
constexpr size_t kMinBlock = 512;                    // every block is a multiple of this
constexpr size_t kSmallSize = size_t(1) << 20;       // requests up to this use the small pool
constexpr size_t kSmallSegment = size_t(2) << 20;    // its segments
constexpr size_t kMinLargeAlloc = size_t(10) << 20;  // large requests below this share segments
constexpr size_t kLargeSegment = size_t(20) << 20;   // of this size
constexpr size_t kLargeStep = size_t(2) << 20;       // larger ones get their own, rounded to this

size_t round_up(size_t value, size_t step) { return (value + step - 1) / step * step; }
}  // namespace

struct CachingAllocator::Segment {
  char* base;
  size_t size;
  Pool* pool;             // the pool its free blocks live in
  Block* first;           // its lowest block (merges keep the left block, so this one stays)
  size_t in_use = 0;      // bytes of its blocks held by tensors
  uint64_t idle_key = 0;  // its key in idle_ while wholly free, else 0
};

// A run of bytes within a segment, free or live; neighbours in the segment are linked in address
// order so that a freed block can merge with them.
struct CachingAllocator::Block {
  char* ptr;
  size_t size;
  Segment* segment;
  Block* prev = nullptr;
  Block* next = nullptr;
  bool allocated = false;
};

bool CachingAllocator::BySize::operator()(const Block* a, const Block* b) const {
  return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
}

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> raw, std::string name,
                                   size_t limit)
    : raw_(std::move(raw)), name_(std::move(name)), limit_(limit) {
  stats_.limit = limit;
}

void CachingAllocator::limit_to_working_set(size_t floor) {
  std::lock_guard<std::mutex> lock(mutex_);
  follows_working_set_ = true;
  working_set_floor_ = floor;
  update_limit();
  release_idle(stats_.limit);
}

void CachingAllocator::update_limit() {
  stats_.limit = follows_working_set_
                     ? std::min(limit_, std::max(working_set_floor_, high_water_))
                     : limit_;
}

CachingAllocator::~CachingAllocator() {
  // Live blocks may still be referenced by static tensors at exit: only idle segments go back,
  // the others are left to the process's end (their bookkeeping is freed).
  release_idle(0);
  for (Segment* segment : segments_) {
    for (Block* block = segment->first; block;) {
      Block* next = block->next;
      delete block;
      block = next;
    }
    delete segment;
  }
}

size_t CachingAllocator::round_size(size_t bytes) {
  return round_up(bytes == 0 ? 1 : bytes, kMinBlock);
}

size_t CachingAllocator::segment_size(size_t size) {
  if (size <= kSmallSize) return kSmallSegment;
  if (size < kMinLargeAlloc) return kLargeSegment;
  return round_up(size, kLargeStep);
}

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  Pool& pool = size <= kSmallSize ? small_pool_ : large_pool_;
  Block* block = best_fit(pool, size);
  const bool hit = block != nullptr;
  if (hit) {
    stats_.reuses++;
  } else {
    profiler::ProfileScope scope("system alloc", profiler::Category::alloc);
    block = new_segment(pool, size);
    KILN_CHECK(block != nullptr, name_, ": out of memory allocating ", bytes, " bytes (rounded to ",
               size, "); ", stats_.in_use, " bytes in use by tensors, peak ", stats_.peak_in_use,
               ", idle cache already released. Reduce batch or model size.");
  }
  split(pool, block, size);
  block->allocated = true;
  set_segment_in_use(block->segment, block->segment->in_use + block->size);
  live_[block->ptr] = block;
  stats_.cached -= block->size;
  stats_.in_use += block->size;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  if (stats_.in_use > high_water_) {
    high_water_ = stats_.in_use;
    update_limit();
  }
  stats_.peak_held = std::max(stats_.peak_held, stats_.held());
  profiler::record_allocation(block->size, hit);
  return block->ptr;
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  KILN_CHECK(try_free(ptr), name_, ": free of a pointer this allocator did not hand out");
}

bool CachingAllocator::owns(void* ptr) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_.count(ptr) != 0;
}

bool CachingAllocator::try_free(void* ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return false;
  Block* block = it->second;
  live_.erase(it);
  Pool& pool = *block->segment->pool;
  block->allocated = false;
  stats_.in_use -= block->size;
  stats_.cached += block->size;
  set_segment_in_use(block->segment, block->segment->in_use - block->size);
  if (block->prev && !block->prev->allocated) block = merge(pool, block->prev, block);
  if (block->next && !block->next->allocated) block = merge(pool, block, block->next);
  pool.insert(block);
  release_idle(stats_.limit);
  return true;
}

// The smallest free block of at least `size` bytes (the lowest address among equals), taken out
// of the pool; nullptr when none fits.
CachingAllocator::Block* CachingAllocator::best_fit(Pool& pool, size_t size) {
  Block key{nullptr, size, nullptr};
  auto it = pool.lower_bound(&key);
  if (it == pool.end()) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

// A fresh segment for a request of `size` bytes, as one free block outside the pool. Its spare
// room beyond `size` is cache from the start, so a segment only gets spare room the limit allows.
// When the backing allocator is out of memory, the idle segments go back and the request is
// retried once; nullptr if that fails too.
CachingAllocator::Block* CachingAllocator::new_segment(Pool& pool, size_t size) {
  size_t bytes = segment_size(size);
  if (stats_.cached + (bytes - size) > stats_.limit) bytes = size;
  void* ptr = raw_->allocate(bytes);
  if (!ptr && bytes != size) ptr = raw_->allocate(bytes = size);
  if (!ptr && !idle_.empty()) {
    release_idle(0);
    ptr = raw_->allocate(bytes = size);
  }
  if (!ptr) return nullptr;
  auto* segment = new Segment{static_cast<char*>(ptr), bytes, &pool, nullptr};
  segment->first = new Block{segment->base, bytes, segment};
  segments_.insert(segment);
  stats_.cached += bytes;
  stats_.segments++;
  stats_.raw_allocs++;
  return segment->first;
}

// Cuts `block` (outside the pool) down to `size` bytes when the rest is worth keeping: any rest
// in the small pool, more than kSmallSize in the large one (a smaller rest stays with the block).
void CachingAllocator::split(Pool& pool, Block* block, size_t size) {
  size_t rest = block->size - size;
  bool small = &pool == &small_pool_;
  if (small ? rest < kMinBlock : rest <= kSmallSize) return;
  auto* tail = new Block{block->ptr + size, rest, block->segment, block, block->next};
  if (block->next) block->next->prev = tail;
  block->next = tail;
  block->size = size;
  pool.insert(tail);
  stats_.splits++;
}

// Joins two free neighbours `left` and `right` of one segment into `left`; returns it.
CachingAllocator::Block* CachingAllocator::merge(Pool& pool, Block* left, Block* right) {
  pool.erase(left);  // keyed by size: out before the size changes
  pool.erase(right);
  left->size += right->size;
  left->next = right->next;
  if (right->next) right->next->prev = left;
  delete right;
  stats_.merges++;
  return left;
}

// Sets a segment's bytes in use, keeping `fragmented` and the list of idle segments current.
void CachingAllocator::set_segment_in_use(Segment* segment, size_t in_use) {
  auto free_part = [segment](size_t used) { return used > 0 ? segment->size - used : 0; };
  stats_.fragmented = stats_.fragmented - free_part(segment->in_use) + free_part(in_use);
  segment->in_use = in_use;
  if (in_use > 0 && segment->idle_key != 0) {
    idle_.erase(segment->idle_key);
    segment->idle_key = 0;
  } else if (in_use == 0) {
    segment->idle_key = ++clock_;
    idle_[segment->idle_key] = segment;
  }
}

// Gives idle segments back, the longest idle first, until at most `limit` bytes are cached or
// none is idle. Longest idle first: a segment freed a moment ago most likely holds the sizes the
// next step asks for again (a training step repeats its allocations), while one idle since many
// steps back held a batch shape that has not come round since.
void CachingAllocator::release_idle(size_t limit) {
  while (stats_.cached > limit && !idle_.empty()) {
    Segment* segment = idle_.begin()->second;
    idle_.erase(idle_.begin());
    Block* block = segment->first;  // wholly free, hence merged into one block
    segment->pool->erase(block);
    raw_->release(segment->base, segment->size);
    stats_.cached -= segment->size;
    stats_.segments--;
    stats_.releases++;
    segments_.erase(segment);
    delete block;
    delete segment;
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_idle(0);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
  stats_.peak_held = stats_.held();
}

size_t parse_cache_limit(const std::string& text, size_t capacity) {
  auto fail = [&text](const char* why) {
    KILN_FAIL("KILN_CACHE_LIMIT=\"", text, "\": ", why,
              "; expected bytes (0 for no cache, 500000000, 512M, 2G) or a percentage of the "
              "memory (10%)");
  };
  size_t digits = 0;
  bool point = false;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) ||
                                  (text[digits] == '.' && !point))) {
    point = point || text[digits] == '.';
    ++digits;
  }
  if (digits == 0 || text.substr(0, digits) == ".") fail("no number");
  if (digits > 24) fail("too large");
  double value = std::stod(text.substr(0, digits));
  std::string unit = text.substr(digits);
  double bytes = 0;
  if (unit == "%") {
    if (value > 100) fail("a percentage above 100");
    bytes = std::floor(static_cast<double>(capacity) * value / 100);
  } else {
    double scale = 0;
    if (unit.empty()) scale = 1;
    if (unit.size() == 1 || (unit.size() == 3 && unit.substr(1) == "iB")) {
      switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
        case 'K': scale = 1024.0; break;
        case 'M': scale = 1024.0 * 1024; break;
        case 'G': scale = 1024.0 * 1024 * 1024; break;
        case 'T': scale = 1024.0 * 1024 * 1024 * 1024; break;
      }
    }
    if (scale == 0) fail("unknown unit (K, M, G, T or %)");
    bytes = std::floor(value * scale);
  }
  if (bytes >= 18446744073709551615.0) fail("too large");
  return static_cast<size_t>(bytes);
}

size_t cache_limit_for(size_t capacity, size_t divisor) {
  const char* text = std::getenv("KILN_CACHE_LIMIT");
  if (text) return parse_cache_limit(text, capacity);
  return capacity / divisor;
}

namespace {

// Segments of 1 MiB and up are mapped pages, so that releasing one gives it back to the system at
// once: glibc's free would keep a chunk that size in its heap once its dynamic mmap threshold has
// grown past it (which the first free of a large chunk does).
class CpuRawAllocator : public RawAllocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes < kSmallSize) return std::aligned_alloc(64, round_up(bytes, 64));
    void* ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return ptr == MAP_FAILED ? nullptr : ptr;
  }
  void release(void* ptr, size_t bytes) override {
    if (bytes < kSmallSize)
      std::free(ptr);
    else
      munmap(ptr, bytes);
  }
};

// Host memory is cached like device memory: a training step allocates the same sizes every
// step, and handing large blocks back to the OS would page-fault them in again each time.
// Under AddressSanitizer the cache is bypassed (by a plain pass-through) so use-after-free of a
// tensor's memory is still caught.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheHostMemory = false;
#else
constexpr bool kCacheHostMemory = true;
#endif

// Host cache limit: 1/8 of physical RAM, and by default no more than the working set (below).
// The cache needs to hold one training step's transient tensors for steps to run without page
// faults; a CPU step with more than 1/8 of RAM in transient tensors is rare (the full fra-eng
// corpus's 2x256 GRU with attention: about 0.8 GB in use at its peak), and 7/8 stay for live
// tensors, the corpus and the other processes.
size_t host_cache_limit() {
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  size_t ram = pages > 0 && page_size > 0 ? size_t(pages) * size_t(page_size) : 0;
  return ram > 0 ? cache_limit_for(ram, 8) : CachingAllocator::kNoLimit;
}

// The host default also keeps the cache within the working set (limit_to_working_set), at least
// 64 MiB so that small programs keep their few segments. On the full fra-eng corpus (2x256 GRU
// with attention, 400 steps) this took the peak RSS from 3.0 to 1.6 GB at the same speed: a fixed
// cap of 512 MiB lost 0-2% of the tokens a second, 256 MiB 3-10%, no cache 36%.
constexpr size_t kWorkingSetFloor = size_t(64) << 20;

std::unique_ptr<CachingAllocator> make_cpu_allocator() {
  auto allocator = std::make_unique<CachingAllocator>(std::make_unique<CpuRawAllocator>(),
                                                      "cpu allocator", host_cache_limit());
  if (!std::getenv("KILN_CACHE_LIMIT")) allocator->limit_to_working_set(kWorkingSetFloor);
  return allocator;
}

CachingAllocator& cpu_allocator() {
  static std::unique_ptr<CachingAllocator> allocator = make_cpu_allocator();
  return *allocator;
}

#ifdef KILN_WITH_CUDA
class CudaRawAllocator : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}
  void* allocate(size_t bytes) override {
    // Only when it differs: nothing beyond what cudaMalloc needs happens during a graph capture.
    int current = -1;
    KILN_CUDA_CHECK(cudaGetDevice(&current));
    if (current != device_) cuda::set_device(device_);
    void* ptr = nullptr;
    // During a graph capture cudaMalloc is a call the capture forbids unless relaxed: it is not
    // captured, and the graph's pool keeps the memory for every replay, so here it is safe (as in
    // PyTorch's allocator).
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    if (cuda::is_capturing()) KILN_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (cuda::is_capturing()) KILN_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky error so later calls work
      return nullptr;
    }
    KILN_CUDA_CHECK(err);
    return ptr;
  }
  void release(void* ptr, size_t) override {
    // At process exit the driver may already be gone; nothing useful can be done then.
    cudaFree(ptr);
  }

 private:
  int device_;
};

// Device cache limit: 1/2 of the device's memory. A training step's transient tensors up to half
// the device stay cached (no cudaMalloc in the steady state), and a process whose working set has
// shrunk leaves the other half to the processes sharing the device. A step that needs more sets
// KILN_CACHE_LIMIT=100%.
CachingAllocator& cuda_allocator(int device) {
  static std::vector<std::unique_ptr<CachingAllocator>> allocators = [] {
    std::vector<std::unique_ptr<CachingAllocator>> list;
    for (int d = 0; d < cuda::device_count(); ++d) {
      cudaDeviceProp properties;
      KILN_CUDA_CHECK(cudaGetDeviceProperties(&properties, d));
      list.push_back(std::make_unique<CachingAllocator>(
          std::make_unique<CudaRawAllocator>(d), "cuda:" + std::to_string(d) + " allocator",
          cache_limit_for(properties.totalGlobalMem, 2)));
    }
    return list;
  }();
  KILN_CHECK(device >= 0 && device < static_cast<int>(allocators.size()),
             "allocate: device cuda:", device, " is not available (", allocators.size(),
             " CUDA devices visible)");
  return *allocators[device];
}
#endif

}  // namespace

#ifdef KILN_WITH_CUDA
// A CUDA graph's memory (allocator.h). Pools live in `graph_pools` from their capture until their
// graph is retired and their last block freed.
struct GraphPool {
  int device;
  CachingAllocator memory;
  std::vector<void*> held;  // ordinary-cache blocks freed during the capture
  bool retired = false;
  explicit GraphPool(int d)
      : device(d),
        memory(std::make_unique<CudaRawAllocator>(d), "cuda:" + std::to_string(d) + " graph pool") {}
};

namespace {
std::mutex graph_pools_mutex;
std::vector<std::shared_ptr<GraphPool>> graph_pools;
thread_local GraphPool* capturing_pool = nullptr;

// Frees `ptr` if a graph pool handed it out; a retired pool left empty goes.
bool free_in_graph_pool(void* ptr) {
  std::lock_guard<std::mutex> lock(graph_pools_mutex);
  for (auto it = graph_pools.begin(); it != graph_pools.end(); ++it) {
    GraphPool& pool = **it;
    if (!pool.memory.try_free(ptr)) continue;
    if (pool.retired && pool.memory.stats().in_use == 0) graph_pools.erase(it);
    return true;
  }
  return false;
}
}  // namespace

std::shared_ptr<GraphPool> begin_graph_pool(int device) {
  KILN_CHECK(!capturing_pool, "begin_graph_pool: this thread is already capturing into a pool");
  cuda_allocator(device);  // the ordinary cache exists before frees are routed around it
  auto pool = std::make_shared<GraphPool>(device);
  {
    std::lock_guard<std::mutex> lock(graph_pools_mutex);
    graph_pools.push_back(pool);
  }
  capturing_pool = pool.get();
  return pool;
}

void end_graph_pool() { capturing_pool = nullptr; }

void retire_graph_pool(const std::shared_ptr<GraphPool>& pool) {
  if (!pool) return;
  if (capturing_pool == pool.get()) capturing_pool = nullptr;
  for (void* ptr : pool->held) cuda_allocator(pool->device).free(ptr);
  pool->held.clear();
  std::lock_guard<std::mutex> lock(graph_pools_mutex);
  pool->retired = true;
  if (pool->memory.stats().in_use == 0) {
    graph_pools.erase(std::remove(graph_pools.begin(), graph_pools.end(), pool), graph_pools.end());
  }
}

AllocatorStats graph_pool_stats(const GraphPool& pool) { return pool.memory.stats(); }
#else
std::shared_ptr<GraphPool> begin_graph_pool(int) {
  KILN_FAIL("begin_graph_pool: this build of kiln has no CUDA support");
}
void end_graph_pool() {}
void retire_graph_pool(const std::shared_ptr<GraphPool>&) {}
AllocatorStats graph_pool_stats(const GraphPool&) { return {}; }
#endif

void* allocate_bytes(size_t bytes, Device device) {
  if (device.is_cpu()) {
    if (kCacheHostMemory) return cpu_allocator().allocate(bytes);
    size_t size = round_up(bytes == 0 ? 1 : bytes, 64);
    void* ptr = std::aligned_alloc(64, size);
    KILN_CHECK(ptr != nullptr, "allocate: out of host memory allocating ", bytes, " bytes");
    profiler::record_allocation(size, false);
    return ptr;
  }
#ifdef KILN_WITH_CUDA
  if (capturing_pool && capturing_pool->device == device.index) {
    return capturing_pool->memory.allocate(bytes);
  }
  return cuda_allocator(device.index).allocate(bytes);
#else
  KILN_FAIL("allocate: cannot allocate on ", device.str(),
            ": this build of kiln has no CUDA support");
#endif
}

void free_bytes(void* ptr, Device device) {
  if (device.is_cpu()) {
    if (kCacheHostMemory)
      cpu_allocator().free(ptr);
    else
      std::free(ptr);
    return;
  }
#ifdef KILN_WITH_CUDA
  CachingAllocator& cache = cuda_allocator(device.index);
  if (capturing_pool && capturing_pool->device == device.index) {
    if (capturing_pool->memory.try_free(ptr)) return;  // reusable later in the same capture
    if (cache.owns(ptr)) {
      capturing_pool->held.push_back(ptr);  // the graph may read it at every replay
      return;
    }
  }
  if (cache.try_free(ptr) || free_in_graph_pool(ptr)) return;
  KILN_FAIL("free_bytes: ", device.str(), " memory that no allocator of kiln handed out");
#endif
}

AllocatorStats memory_stats(Device device) {
  if (device.is_cpu()) return cpu_allocator().stats();
#ifdef KILN_WITH_CUDA
  return cuda_allocator(device.index).stats();
#else
  KILN_FAIL("memory_stats: this build of kiln has no CUDA support");
#endif
}

std::string memory_summary(Device device) {
  AllocatorStats m = memory_stats(device);
  auto mib = [](size_t bytes) { return bytes / 1048576.0; };
  char line[400];
  std::snprintf(line, sizeof line,
                "memory on %s: %.2f MiB in use, %.2f MiB cached (limit %.0f MiB), peak %.2f MiB "
                "in use, %.2f MiB held; %zu segments, %zu raw allocations, %zu reuses, %zu "
                "splits, %zu merges, %zu releases",
                device.str().c_str(), mib(m.in_use), mib(m.cached), mib(m.limit),
                mib(m.peak_in_use), mib(m.peak_held), m.segments, m.raw_allocs, m.reuses, m.splits,
                m.merges, m.releases);
  return line;
}

void reset_peak_memory(Device device) {
  if (device.is_cpu()) {
    cpu_allocator().reset_peak();
    return;
  }
#ifdef KILN_WITH_CUDA
  cuda_allocator(device.index).reset_peak();
#endif
}

void empty_cuda_cache() {
#ifdef KILN_WITH_CUDA
  for (int d = 0; d < cuda::device_count(); ++d) cuda_allocator(d).empty_cache();
#endif
}

void empty_cpu_cache() { cpu_allocator().empty_cache(); }

void empty_cache() {
  empty_cpu_cache();
  empty_cuda_cache();
}

}  // namespace kiln
