// CUDA clip_grad_norm (kernels/clip_norm.h): two launches for any number of tensors.
#include "core/cuda_check.h"
#include "kernels/clip_norm.h"
#include "kernels/dispatch.h"

namespace kiln::kernels {

namespace {

constexpr int kThreads = 512;

// Fixed-shape tree reduction in shared memory: the same order on every run.
template <class T> __device__ T block_sum(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  T total = shared[0];
  __syncthreads();
  return total;
}

struct ChunkRange {
  int64_t tensor, begin, end;
};

__device__ ChunkRange chunk_range(const int64_t* table, int64_t tensors, int64_t chunk) {
  const int64_t* sizes = table + tensors;
  const int64_t* first_chunk = sizes + tensors;
  int64_t lo = 0, hi = tensors - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (first_chunk[mid] <= chunk) lo = mid;
    else hi = mid - 1;
  }
  int64_t begin = (chunk - first_chunk[lo]) * kMultiTensorChunk;
  int64_t end = begin + kMultiTensorChunk < sizes[lo] ? begin + kMultiTensorChunk : sizes[lo];
  return {lo, begin, end};
}

template <class T> __global__ void clip_norm_partial_kernel(const int64_t* table, int64_t tensors, T* partial) {
  __shared__ T shared[kThreads];
  ChunkRange r = chunk_range(table, tensors, blockIdx.x);
  const T* g = reinterpret_cast<const T*>(table[r.tensor]);
  T total = T(0);
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) total += g[i] * g[i];
  total = block_sum(total, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <class T>
__global__ void clip_norm_scale_kernel(const int64_t* table, int64_t tensors, const T* partial, int64_t chunks,
                                       T max_norm, T* norm_out, T* scale_out) {
  __shared__ T shared[kThreads];
  T total = T(0);
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) total += partial[c];
  T norm = math::sqrt(block_sum(total, shared));
  T scale = clip_scale(norm, max_norm);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *norm_out = norm;
    *scale_out = scale;
  }
  if (scale == T(1)) return;
  ChunkRange r = chunk_range(table, tensors, blockIdx.x);
  T* g = reinterpret_cast<T*>(table[r.tensor]);
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) g[i] *= scale;
}

}  // namespace

void clip_grad_norm_cuda(MultiTensorPlan& plan, const std::vector<Tensor>& grads, double max_norm,
                         const Tensor& norm, const Tensor& scale) {
  int64_t chunks = plan.num_chunks();
  KILN_DISPATCH_FLOAT(grads[0].dtype(), "clip_grad_norm", [&] {
    using T = scalar_t;
    Tensor partial = empty({chunks}, grads[0].options());
    unsigned blocks = static_cast<unsigned>(chunks);
    clip_norm_partial_kernel<T><<<blocks, kThreads>>>(plan.device_table(), plan.num_tensors(), partial.data<T>());
    KILN_CUDA_CHECK(cudaGetLastError());
    clip_norm_scale_kernel<T><<<blocks, kThreads>>>(plan.device_table(), plan.num_tensors(), partial.data<T>(),
                                                    chunks, T(max_norm), norm.data<T>(), scale.data<T>());
    KILN_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kiln::kernels
