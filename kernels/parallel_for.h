// parallel_for(device, n, f): calls f(i) for every i in [0, n), on the CPU as an OpenMP loop and
// on CUDA as a grid-stride kernel. The functor's body is the math, written once (DESIGN.md); the
// loop is the only backend-specific part. A functor is a plain struct of pointers and scalars
// whose `KILN_HD void operator()(int64_t i) const` handles element (or row) i.
//
// The CUDA branch exists only in translation units compiled by nvcc: kiln's own kernel files are
// (CMake compiles them as CUDA whenever CUDA is on). A user file compiled by the host compiler can
// still launch on the CPU; a CUDA launch from such a file raises a kiln::Error saying so.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/cuda_runtime.h"
#include "core/device.h"
#include "core/error.h"
#include "core/host_device.h"
#include "core/profiler.h"
#include "kernels/threads.h"
#ifdef __CUDACC__
#include "core/cuda_check.h"
#endif

// KILN_SIMD(clauses): `#pragma omp simd clauses` for the host compiler (a row loop inside a
// functor that is safe to vectorize, e.g. KILN_SIMD(reduction(+ : sum))); nothing in device code.
#define KILN_PRAGMA(text) _Pragma(#text)
#if defined(__CUDA_ARCH__)
#define KILN_SIMD(...)
#else
#define KILN_SIMD(...) KILN_PRAGMA(omp simd __VA_ARGS__)
#endif

namespace kiln {

// Below this many elements a loop runs on one thread. The fork/join alone (0.6 us with spinning
// workers) would pay from ~32k elements, but a woken worker spins on after the region and slows the
// serial work that follows; in a small training step (loops of 20k-128k elements) two threads lost
// to one (kernels/gemm.h, kSingleThreadGemmVolume, has the measurement). Loops that know their work
// per element is heavier pass their own grain (the RNN gates: 4096).
constexpr int64_t kParallelGrain = 262144;

// The threads of a CPU region over `work` elements: 1 below `grain`, else the thread policy's
// count (kernels/threads.h). Every `omp parallel` in kiln takes its num_threads from here.
inline int threads_for(int64_t work, int64_t grain = kParallelGrain) {
  return work < grain ? 1 : num_threads();
}

// Calls f(i) for every i in [0, n): split statically over `threads` OpenMP threads, or, for one
// thread, as a plain loop on the caller. kiln's CPU regions go through here (or, like
// parallel_for_rows, write the same two branches out): `#pragma omp parallel ... if (false)` still
// enters libgomp, which forks a team of one and wakes a futex at its end (about 110 system calls
// a small training step, 0.25 ms of its 1.5).
template <class F> void cpu_for(int threads, int64_t n, const F& f) {
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <class F> void parallel_for_cpu(int64_t n, const F& f, int64_t grain = kParallelGrain) {
  const int threads = threads_for(n, grain);
  profiler::ProfileScope scope("parallel_for", profiler::Category::kernel, threads > 1);
  scope.add_items(n);
  cpu_for(threads, n, f);
}

#ifdef __CUDACC__
template <class F> __global__ void parallel_for_kernel(int64_t n, F f) {
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    f(i);
  }
}

int cuda_sm_count();  // multiprocessors of the current device (cached)

template <class F> void parallel_for_cuda(int64_t n, const F& f) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  // Enough blocks to fill the device several times over; the grid-stride loop does the rest.
  int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(cuda_sm_count()) * 16);
  // The launch is asynchronous: the span is the launch's host time, not the kernel's.
  profiler::ProfileScope scope("parallel_for launch", profiler::Category::kernel);
  scope.add_items(n);
  parallel_for_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, cuda::current_stream()>>>(n, f);
  KILN_CUDA_CHECK(cudaGetLastError());
}
#endif

template <class F>
void parallel_for(Device device, int64_t n, const F& f, int64_t grain = kParallelGrain) {
  if (device.is_cpu()) {
    parallel_for_cpu(n, f, grain);
    return;
  }
#ifdef __CUDACC__
  parallel_for_cuda(n, f);
#else
  KILN_FAIL("parallel_for on ", device.str(),
            ": this translation unit was not compiled by nvcc; compile it as CUDA to launch there");
#endif
}

// parallel_for_rows(device, rows, cols, f): calls f(row, col) over a rows x cols grid whose rows
// are short vectors (a batch of hidden states). On the CPU: OpenMP over the rows (when the grid
// has at least `grain` elements) and `omp simd` over the columns of a row, so the math of f
// vectorizes (a flat index would cost a division per element and hide the contiguous columns).
// On CUDA: one thread per element of the flat grid, the index split once. As on the GPU, the
// calls must be independent of each other.
#ifdef __CUDACC__
template <class F> struct RowsAsFlat {  // element i of the flat grid as f(row, col)
  F f;
  int64_t cols;
  __device__ void operator()(int64_t i) const { f(i / cols, i % cols); }
};
#endif

// f(row, col) for rows [begin, end) of a grid `cols` wide, on the calling thread: the serial form
// of parallel_for_rows, for a caller that already runs on its own block of rows
// (kernels/rnn_steps.h).
template <class F> void cpu_rows(int64_t begin, int64_t end, int64_t cols, const F& f) {
  for (int64_t row = begin; row < end; ++row) {
#pragma omp simd
    for (int64_t col = 0; col < cols; ++col) f(row, col);
  }
}

template <class F>
void parallel_for_rows(Device device, int64_t rows, int64_t cols, const F& f,
                       int64_t grain = kParallelGrain) {
  if (rows <= 0 || cols <= 0) return;
  if (device.is_cpu()) {
    const int threads = threads_for(rows * cols, grain);
    profiler::ProfileScope scope("parallel_for_rows", profiler::Category::kernel, threads > 1);
    scope.add_items(rows * cols);
    // The loop is written out rather than passed to cpu_for as a lambda: behind the extra call GCC
    // stopped inlining the LSTM gate functor, and its simd loop became a scalar call per element
    // (4.4 ms a small LSTM step instead of 2).
    if (threads <= 1) {
      cpu_rows(0, rows, cols, f);
      return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t row = 0; row < rows; ++row) {
#pragma omp simd
      for (int64_t col = 0; col < cols; ++col) f(row, col);
    }
    return;
  }
#ifdef __CUDACC__
  parallel_for_cuda(rows * cols, RowsAsFlat<F>{f, cols});
#else
  KILN_FAIL("parallel_for_rows on ", device.str(),
            ": this translation unit was not compiled by nvcc; compile it as CUDA to launch there");
#endif
}

// parallel_for_2d(device, rows, cols, f): calls f(row, col) over a rows x cols grid. For row-wise
// kernels (a loss over [N, V]) this spares the per-element division of a flat index, which is
// slow on GPUs for 64-bit integers. CPU: OpenMP over rows, a plain inner loop over columns.
#ifdef __CUDACC__
template <class F> __global__ void parallel_for_2d_kernel(int64_t rows, int64_t cols, F f) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    for (int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; col < cols;
         col += static_cast<int64_t>(blockDim.x) * gridDim.x) {
      f(row, col);
    }
  }
}
#endif

template <class F> void parallel_for_2d(Device device, int64_t rows, int64_t cols, const F& f) {
  if (rows <= 0 || cols <= 0) return;
  if (device.is_cpu()) {
    const int threads = threads_for(rows * cols);
    profiler::ProfileScope scope("parallel_for_2d", profiler::Category::kernel, threads > 1);
    scope.add_items(rows * cols);
    cpu_for(threads, rows, [&](int64_t row) {
      for (int64_t col = 0; col < cols; ++col) f(row, col);
    });
    return;
  }
#ifdef __CUDACC__
  constexpr int kThreads = 256;
  // A few blocks per row, each striding over the columns: enough work per thread to hide the
  // per-row loads, and a grid of rows x 16 blocks at most.
  unsigned blocks_x =
      static_cast<unsigned>(std::min<int64_t>((cols + kThreads - 1) / kThreads, 16));
  unsigned blocks_y = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  profiler::ProfileScope scope("parallel_for_2d launch", profiler::Category::kernel);
  scope.add_items(rows * cols);
  parallel_for_2d_kernel<<<dim3(blocks_x, blocks_y), kThreads, 0, cuda::current_stream()>>>(
      rows, cols, f);
  KILN_CUDA_CHECK(cudaGetLastError());
#else
  KILN_FAIL("parallel_for_2d on ", device.str(),
            ": this translation unit was not compiled by nvcc; compile it as CUDA to launch there");
#endif
}

}  // namespace kiln
