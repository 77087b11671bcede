// Memory for tensors. Host and CUDA memory both come from a bounded caching allocator in the
// spirit of PyTorch's CUDA caching allocator, simplified:
// - Requests are rounded up to 512 bytes and served from segments taken from the backing
//   allocator: 2 MiB segments for requests up to 1 MiB (the small pool), 20 MiB segments for
//   requests under 10 MiB and segments of the request's own size (rounded up to 2 MiB) above
//   that (the large pool).
// - A request takes the smallest free block of its pool that fits (best fit) and splits off the
//   rest when it is worth keeping (512 bytes in the small pool, over 1 MiB in the large one).
// - A freed block merges with its free neighbours in its segment; a segment whose blocks are all
//   free is "idle" and can go back to the backing allocator.
// - The free bytes held (`cached`) are capped: when freeing a block puts them over the limit, idle
//   segments are released, the longest idle first, until the cache is under the limit again. Free
//   bytes in a segment that still holds live blocks cannot be released; they count in `cached`
//   and in `fragmented`, and the limit holds again once that segment's live blocks are freed.
//   A new segment's spare room (beyond its first request) counts as cache from the start, so a
//   segment only gets spare room the limit allows; otherwise it is the request's own size.
// - When the backing allocator is out of memory, idle segments are released and the request
//   retried once before a kiln::Error that states the request and the allocator's state.
// The limit defaults to 1/8 of physical RAM for host memory and 1/2 of the device's memory for
// CUDA (cache_limit_for), and is set for both by KILN_CACHE_LIMIT (parse_cache_limit). The host
// default also follows the working set (limit_to_working_set): at most the most bytes ever in use
// at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/device.h"

namespace kiln {

struct AllocatorStats {
  size_t in_use = 0;       // bytes in blocks held by live tensors (rounded sizes)
  size_t cached = 0;       // bytes in free blocks kept for reuse; in_use + cached = held
  size_t fragmented = 0;   // the part of `cached` in segments that also hold live blocks
  size_t limit = 0;        // the cap on `cached` now (limit_to_working_set: it grows with it)
  size_t peak_in_use = 0;  // high-water mark of in_use
  size_t peak_held = 0;    // high-water mark of in_use + cached
  size_t segments = 0;     // segments held from the backing allocator now
  size_t raw_allocs = 0;   // segments taken from the backing allocator (all time)
  size_t releases = 0;     // segments given back to it (all time)
  size_t reuses = 0;       // requests served from a cached block (all time)
  size_t splits = 0;       // blocks split to serve a smaller request (all time)
  size_t merges = 0;       // freed blocks merged with a free neighbour (all time)
  size_t held() const { return in_use + cached; }
};

// The backing allocator a cache sits on: cudaMalloc or mmap in real use, a fake with a budget in
// tests.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual void* allocate(size_t bytes) = 0;  // nullptr when out of memory
  virtual void release(void* ptr, size_t bytes) = 0;
};

class CachingAllocator {
 public:
  static constexpr size_t kNoLimit = SIZE_MAX;
  CachingAllocator(std::unique_ptr<RawAllocator> raw, std::string name, size_t limit = kNoLimit);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);  // throws kiln::Error when memory cannot be had
  void free(void* ptr);
  bool try_free(void* ptr);        // false (and nothing done) for a pointer not handed out here
  bool owns(void* ptr) const;      // handed out here and not freed yet
  void empty_cache();  // returns every idle segment to the backing allocator
  // From now on the cap on `cached` is also at most the most bytes ever in use at once (not reset
  // by reset_peak), though never under `floor`. A cache holding more free bytes than the
  // program's largest working set holds blocks of sizes it no longer asks for: batches of varied
  // shapes each leave segments that fit only their own sizes (the full fra-eng corpus: 2.6 GB
  // cached against 0.8 GB ever in use at once, under a 2.9 GB limit).
  void limit_to_working_set(size_t floor);
  AllocatorStats stats() const;
  void reset_peak();

  static size_t round_size(size_t bytes);   // the block size of a request
  static size_t segment_size(size_t size);  // the segment a new block of `size` comes in

 private:
  struct Segment;
  struct Block;
  struct BySize {
    bool operator()(const Block* a, const Block* b) const;
  };
  using Pool = std::set<Block*, BySize>;

  Block* best_fit(Pool& pool, size_t size);
  Block* new_segment(Pool& pool, size_t size);
  void split(Pool& pool, Block* block, size_t size);
  Block* merge(Pool& pool, Block* left, Block* right);
  void set_segment_in_use(Segment* segment, size_t in_use);
  void release_idle(size_t limit);
  void update_limit();  // stats_.limit from limit_, working_set_floor_ and high_water_

  std::unique_ptr<RawAllocator> raw_;
  std::string name_;
  mutable std::mutex mutex_;
  Pool small_pool_, large_pool_;            // free blocks, smallest first
  std::unordered_map<void*, Block*> live_;  // pointer -> its block
  std::unordered_set<Segment*> segments_;   // every segment held
  std::map<uint64_t, Segment*> idle_;       // wholly free segments, longest idle first
  uint64_t clock_ = 0;                      // orders idle_
  size_t limit_;                            // the cap given (KILN_CACHE_LIMIT or the default)
  bool follows_working_set_ = false;        // limit_to_working_set was called
  size_t working_set_floor_ = 0;
  size_t high_water_ = 0;  // the most bytes ever in use at once
  AllocatorStats stats_;
};

// The cap for an allocator in front of `capacity` bytes (physical RAM or device memory): the
// KILN_CACHE_LIMIT environment variable when set (parse_cache_limit), else capacity / divisor.
size_t cache_limit_for(size_t capacity, size_t divisor);
// "0" (no caching), bytes ("500000000"), with a binary unit ("512K", "1.5G", "2GiB": K, M, G, T,
// any case, powers of 1024) or a percentage of `capacity` ("10%", "12.5%"). Errors name
// KILN_CACHE_LIMIT and the text.
size_t parse_cache_limit(const std::string& text, size_t capacity);

void* allocate_bytes(size_t bytes, Device device);
void free_bytes(void* ptr, Device device);
// Statistics of the caching allocator behind `device` (host memory is cached too, except in
// AddressSanitizer builds, whose host stats stay zero).
AllocatorStats memory_stats(Device device);
// memory_stats as one line: "memory on cpu: 0.01 MiB in use, 1.99 MiB cached (limit 64 MiB),
// peak 0.24 MiB in use, 2.00 MiB held; 1 segments, ..." (mlp_demo and kiln train print it).
std::string memory_summary(Device device);
void reset_peak_memory(Device device);
// Return idle segments (those with no live tensor) to the system.
void empty_cuda_cache();
void empty_cpu_cache();
void empty_cache();  // both

// The memory of a CUDA graph (kernels/cuda_graph.h), in the way of PyTorch's graph pools. Between
// begin_graph_pool and end_graph_pool, this thread's allocations on the device come from the
// graph's own pool: a block freed during the capture is reused later in it (a graph captured from
// one stream replays in the order it was captured), and the pool's memory is the graph's alone, so
// its replays find their tensors where the capture left them. A block of the ordinary cache freed
// during the capture is held until the graph is retired, since every replay may still read it.
// retire_graph_pool (when the graph is destroyed, its work finished) returns those blocks; the
// pool's own memory goes once its last tensor is freed too.
struct GraphPool;
std::shared_ptr<GraphPool> begin_graph_pool(int device);
void end_graph_pool();
void retire_graph_pool(const std::shared_ptr<GraphPool>& pool);
AllocatorStats graph_pool_stats(const GraphPool& pool);

}  // namespace kiln
