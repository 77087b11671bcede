// Memory for tensors. Host and CUDA memory both come from a caching
// allocator in the spirit of PyTorch's: requests are rounded to size classes (512 B steps below
// 1 MiB, 2 MiB steps above), freed blocks are kept per class and handed out again, and when the
// device is out of memory the cache is released and the request retried once before raising a
// kiln::Error that states the request and the allocator's state.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/device.h"

namespace kiln {

struct AllocatorStats {
  size_t in_use = 0;       // bytes held by live tensors (rounded sizes)
  size_t cached = 0;       // bytes in freed blocks kept for reuse
  size_t peak_in_use = 0;  // high-water mark of in_use
  size_t raw_allocs = 0;   // calls that reached the backing allocator
  size_t reuses = 0;       // requests served from the cache
};

// The backing allocator a cache sits on: cudaMalloc in real use, a fake with a budget in tests.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual void* allocate(size_t bytes) = 0;  // nullptr when out of memory
  virtual void release(void* ptr) = 0;
};

class CachingAllocator {
 public:
  CachingAllocator(std::unique_ptr<RawAllocator> raw, std::string name);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);  // throws kiln::Error when memory cannot be had
  void free(void* ptr);
  void empty_cache();  // returns every cached block to the backing allocator
  AllocatorStats stats() const;
  void reset_peak();

  static size_t round_size(size_t bytes);

 private:
  void release_cached_locked();

  std::unique_ptr<RawAllocator> raw_;
  std::string name_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;    // pointer -> rounded size
  std::multimap<size_t, void*> free_blocks_;  // rounded size -> cached block
  AllocatorStats stats_;
};

void* allocate_bytes(size_t bytes, Device device);
void free_bytes(void* ptr, Device device);
// Statistics of the caching allocator behind `device` (host memory is cached too, except in
// AddressSanitizer builds, whose host stats stay zero).
AllocatorStats memory_stats(Device device);
void reset_peak_memory(Device device);
void empty_cuda_cache();
void empty_cpu_cache();

}  // namespace kiln
