// Multi-tensor apply: one launch walks a whole list of tensors (all parameters of a model, say)
// in chunks of kMultiTensorChunk elements. On CUDA each block takes one chunk; the table that maps
// a block to its tensor (pointers, sizes, first chunk of each tensor) lives on the device and is
// rebuilt only when the list of pointers changes, so a training step pays no host-to-device copy
// and no sync. On the CPU the same functor runs in OpenMP loops.
//
// A functor gets the pointers of tensor n in every list, an element index and its scalars:
//   KILN_HD void operator()(T* const* ptrs, int64_t i, const Scalars& s) const
// (ptrs[l] = list l's tensor n). Its device scalars (a gradient scale, a step gate's values) are
// read once per CUDA thread or CPU range by
//   KILN_HD Scalars scalars() const
// and it says whether the whole launch is dropped (a flag on the device, e.g. an optimizer's step
// gate), read as rarely, so the element loop keeps no branch and vectorizes:
//   KILN_HD bool dropped() const
#pragma once

#include <algorithm>
#include <vector>

#include "core/cuda_runtime.h"
#include "core/tensor.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

constexpr int64_t kMultiTensorChunk = 16384;
// The CPU threads an update from this many elements in all: Adam's costs about 1 ns an element (a
// square root and a division), so two threads pay for their fork/join from a few tens of thousands.
constexpr int64_t kMultiTensorGrain = 32768;
constexpr int kMaxLists = 4;

// lists[l][n]: tensor n of list l. Every list has the same length; tensor n has the same numel in
// every list; all tensors share one dtype and device.
using TensorLists = std::vector<std::vector<Tensor>>;

class MultiTensorPlan {
 public:
  // Checks the lists and (re)builds the device table when the pointers changed.
  void prepare(const TensorLists& lists, const char* op);
  int64_t num_tensors() const { return num_tensors_; }
  int64_t num_chunks() const { return num_chunks_; }
  // Device table of int64: [lists x tensors] pointers, then [tensors] sizes, then [tensors + 1]
  // first chunk of each tensor.
  const int64_t* device_table() const { return table_.data<int64_t>(); }
  int num_lists() const { return num_lists_; }

 private:
  std::vector<const void*> key_;
  Tensor table_;
  int64_t num_tensors_ = 0, num_chunks_ = 0;
  int num_lists_ = 0;
};

// Chunks of kMultiTensorChunk elements a tensor of numel elements takes (the last may be short).
KILN_HD inline int64_t multi_tensor_chunks(int64_t numel) {
  return (numel + kMultiTensorChunk - 1) / kMultiTensorChunk;
}

// Which tensor and which elements [begin, end) chunk c of the device table covers: a binary
// search for the last tensor whose first chunk is <= c. Every multi-tensor kernel's block b
// handles chunk b through this one lookup.
struct MultiTensorChunk {
  int64_t tensor, begin, end;
};
KILN_HD inline MultiTensorChunk multi_tensor_chunk(const int64_t* table, int64_t tensors, int lists,
                                                   int64_t chunk) {
  const int64_t* sizes = table + lists * tensors;
  const int64_t* first_chunk = sizes + tensors;
  int64_t lo = 0, hi = tensors - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (first_chunk[mid] <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  int64_t begin = (chunk - first_chunk[lo]) * kMultiTensorChunk;
  int64_t end = begin + kMultiTensorChunk < sizes[lo] ? begin + kMultiTensorChunk : sizes[lo];
  return {lo, begin, end};
}

#ifdef __CUDACC__
template <class T, class F>
__global__ void multi_tensor_kernel(const int64_t* table, int64_t tensors, int lists, F f) {
  if (f.dropped()) return;
  MultiTensorChunk r = multi_tensor_chunk(table, tensors, lists, blockIdx.x);
  T* ptrs[kMaxLists];
  for (int l = 0; l < lists; ++l) ptrs[l] = reinterpret_cast<T*>(table[l * tensors + r.tensor]);
  const auto scalars = f.scalars();
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) f(ptrs, i, scalars);
}
#endif

template <class T> struct MultiTensorPointers { T* p[kMaxLists]; };

// Elements [begin, end) of one tensor on the CPU. f and ptrs arrive by value, so nothing else can
// point at them: GCC keeps the functor's scalars and the pointers in registers and vectorizes the
// loop. Read through a closure that escapes into an OpenMP region, every scalar was reloaded per
// element behind each float store, and the loop stayed scalar (Adam on 110k parameters: 1.1 ms).
template <class T, class F>
void multi_tensor_cpu_range(F f, MultiTensorPointers<T> ptrs, int64_t begin, int64_t end) {
  const auto scalars = f.scalars();
  for (int64_t i = begin; i < end; ++i) f(ptrs.p, i, scalars);
}

// Runs f over every element of every tensor: one launch on CUDA, OpenMP loops on the CPU.
template <class T, class F>
void multi_tensor_apply(const MultiTensorPlan& plan, const TensorLists& lists, const F& f) {
  if (plan.num_tensors() == 0) return;
  Device device = lists[0][0].device();
  if (device.is_cpu()) {
    if (f.dropped()) return;  // host memory on the CPU
    const size_t tensors = lists[0].size();
    std::vector<MultiTensorPointers<T>> ptrs(tensors);
    std::vector<int64_t> offset(tensors + 1, 0);  // tensor n: elements [offset[n], offset[n+1])
    for (size_t n = 0; n < tensors; ++n) {
      for (size_t l = 0; l < lists.size(); ++l) ptrs[n].p[l] = lists[l][n].template data<T>();
      offset[n + 1] = offset[n] + lists[0][n].numel();
    }
    // One region for all the tensors, each thread an equal share of their concatenated elements:
    // a model of many small tensors (a small GRU's 47,816 parameters in 22) is threaded as a whole,
    // and a large one costs one fork/join, not one per tensor.
    const int64_t total = offset[tensors];
    const int threads = threads_for(total, kMultiTensorGrain);
    profiler::ProfileScope scope("multi_tensor", profiler::Category::kernel, threads > 1);
    scope.add_items(total);
    cpu_for(threads, threads, [&](int64_t i) {
      const int64_t begin = total * i / threads, end = total * (i + 1) / threads;
      for (size_t n = 0; n < tensors; ++n) {
        const int64_t lo = std::max(begin, offset[n]), hi = std::min(end, offset[n + 1]);
        if (lo < hi) multi_tensor_cpu_range<T>(f, ptrs[n], lo - offset[n], hi - offset[n]);
      }
    });
    return;
  }
#ifdef __CUDACC__
  multi_tensor_kernel<T>
      <<<static_cast<unsigned>(plan.num_chunks()), 512, 0, cuda::current_stream()>>>(
          plan.device_table(), plan.num_tensors(), plan.num_lists(), f);
  KILN_CUDA_CHECK(cudaGetLastError());
#else
  KILN_FAIL("multi_tensor_apply on ", device.str(),
            ": this translation unit was not compiled by nvcc");
#endif
}

}  // namespace kiln::kernels
