// CUDA clip_grad_norm (kernels/clip_norm.h): two launches for any number of tensors, a block per
// chunk (multi_tensor_chunk), sums by block_sum (kernels/row_math.h). Bytes: the first launch reads
// every gradient once; the second re-reads the partials per block and, when clipping, reads and
// writes every gradient once (without scale_grads, one block only writes norm and scale).
#include "core/cuda_runtime.h"
#include "core/cuda_check.h"
#include "kernels/clip_norm.h"
#include "kernels/dispatch.h"
#include "kernels/row_math.h"

namespace kiln::kernels {

namespace {

constexpr int kThreads = 512;

template <class T>
__global__ void clip_norm_partial_kernel(const int64_t* table, int64_t tensors, T* partial) {
  __shared__ T shared[kThreads];
  MultiTensorChunk r = multi_tensor_chunk(table, tensors, /*lists=*/1, blockIdx.x);
  const T* g = reinterpret_cast<const T*>(table[r.tensor]);
  T total = T(0);
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) total += g[i] * g[i];
  total = block_sum<kThreads>(total, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <class T>
__global__ void clip_norm_scale_kernel(const int64_t* table, int64_t tensors, const T* partial,
                                       int64_t chunks, T max_norm, T* norm_out, T* scale_out,
                                       bool scale_grads) {
  __shared__ T shared[kThreads];
  T total = T(0);
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) total += partial[c];
  T norm = math::sqrt(block_sum<kThreads>(total, shared));
  T scale = clip_scale(norm, max_norm);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *norm_out = norm;
    *scale_out = scale;
  }
  if (!clip_scales_gradients(scale) || !scale_grads) return;
  MultiTensorChunk r = multi_tensor_chunk(table, tensors, /*lists=*/1, blockIdx.x);
  T* g = reinterpret_cast<T*>(table[r.tensor]);
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) g[i] *= scale;
}

}  // namespace

void clip_grad_norm_cuda(MultiTensorPlan& plan, const std::vector<Tensor>& grads, double max_norm,
                         const Tensor& norm, const Tensor& scale, bool scale_grads) {
  int64_t chunks = plan.num_chunks();
  KILN_DISPATCH_FLOAT(grads[0].dtype(), "clip_grad_norm", [&] {
    using T = scalar_t;
    Tensor partial = empty({chunks}, grads[0].options());
    unsigned blocks = static_cast<unsigned>(chunks);
    clip_norm_partial_kernel<T>
        <<<blocks, kThreads, 0, cuda::current_stream()>>>(plan.device_table(), plan.num_tensors(), partial.data<T>());
    KILN_CUDA_CHECK(cudaGetLastError());
    // Without scale_grads one block computes norm and scale and nothing is scaled.
    clip_norm_scale_kernel<T><<<scale_grads ? blocks : 1u, kThreads, 0, cuda::current_stream()>>>(
        plan.device_table(), plan.num_tensors(), partial.data<T>(), chunks, T(max_norm),
        norm.data<T>(), scale.data<T>(), scale_grads);
    KILN_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kiln::kernels
