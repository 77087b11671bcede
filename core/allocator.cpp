#include "core/allocator.h"

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
constexpr size_t kSmallStep = 512;
constexpr size_t kLargeThreshold = size_t(1) << 20;
constexpr size_t kLargeStep = size_t(2) << 20;

size_t round_up(size_t value, size_t step) { return (value + step - 1) / step * step; }
}  // namespace

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> raw, std::string name)
    : raw_(std::move(raw)), name_(std::move(name)) {}

CachingAllocator::~CachingAllocator() {
  // Live blocks may still be referenced by static tensors at exit; only the cache is returned.
  release_cached_locked();
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  return bytes < kLargeThreshold ? round_up(bytes, kSmallStep) : round_up(bytes, kLargeStep);
}

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  auto cached = free_blocks_.find(size);
  const bool hit = cached != free_blocks_.end();
  if (hit) {
    ptr = cached->second;
    free_blocks_.erase(cached);
    stats_.cached -= size;
    stats_.reuses++;
  } else {
    profiler::ProfileScope scope("system alloc", profiler::Category::alloc);
    ptr = raw_->allocate(size);
    if (!ptr && !free_blocks_.empty()) {
      // Out of memory: give every cached block back and try once more.
      release_cached_locked();
      ptr = raw_->allocate(size);
    }
    KILN_CHECK(ptr != nullptr, name_, ": out of memory allocating ", bytes, " bytes (rounded to ",
               size, "); ", stats_.in_use, " bytes in use by tensors, peak ", stats_.peak_in_use,
               ", cache already released. Reduce batch or model size.");
    stats_.raw_allocs++;
  }
  live_[ptr] = size;
  stats_.in_use += size;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  profiler::record_allocation(size, hit);
  return ptr;
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  KILN_CHECK(it != live_.end(), name_, ": free of a pointer this allocator did not hand out");
  size_t size = it->second;
  live_.erase(it);
  stats_.in_use -= size;
  stats_.cached += size;
  free_blocks_.emplace(size, ptr);
}

void CachingAllocator::release_cached_locked() {
  for (auto& [size, ptr] : free_blocks_) raw_->release(ptr);
  free_blocks_.clear();
  stats_.cached = 0;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

namespace {

class CpuRawAllocator : public RawAllocator {
 public:
  void* allocate(size_t bytes) override { return std::aligned_alloc(64, round_up(bytes, 64)); }
  void release(void* ptr) override { std::free(ptr); }
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

CachingAllocator& cpu_allocator() {
  static CachingAllocator allocator(std::make_unique<CpuRawAllocator>(), "cpu allocator");
  return allocator;
}

#ifdef KILN_WITH_CUDA
class CudaRawAllocator : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}
  void* allocate(size_t bytes) override {
    cuda::set_device(device_);
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky error so later calls work
      return nullptr;
    }
    KILN_CUDA_CHECK(err);
    return ptr;
  }
  void release(void* ptr) override {
    // At process exit the driver may already be gone; nothing useful can be done then.
    cudaFree(ptr);
  }

 private:
  int device_;
};

CachingAllocator& cuda_allocator(int device) {
  static std::vector<std::unique_ptr<CachingAllocator>> allocators = [] {
    std::vector<std::unique_ptr<CachingAllocator>> list;
    for (int d = 0; d < cuda::device_count(); ++d) {
      list.push_back(std::make_unique<CachingAllocator>(
          std::make_unique<CudaRawAllocator>(d), "cuda:" + std::to_string(d) + " allocator"));
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
  cuda_allocator(device.index).free(ptr);
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

}  // namespace kiln
