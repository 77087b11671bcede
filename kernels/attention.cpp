// The launchers of kernels/attention.h. CPU: one sentence per thread (parallel_for over B), the
// functor's operator() walking the row. CUDA: one block per sentence, the same member functions
// split over its threads (scores over s, then the row's softmax on one thread, then the context
// over h; backward likewise over s, a and (s, h)): a thread that owns an output column loops
// over s, so no two threads add to one element. A step is one launch each way plus, in
// backward, the column sum of dv's per-sentence partials. Shapes, bytes, FLOPs: the header.
#include "core/cuda_runtime.h"
#include "kernels/attention.h"

#include "kernels/dispatch.h"
#include "kernels/factories.h"
#include "kernels/reduce.h"

namespace kiln::kernels {

namespace {

#ifdef __CUDACC__
constexpr int kAttentionThreads = 128;

// Block b handles sentence b. __syncthreads() also orders the block's global writes (the scores
// in weights, d_score) before the next phase reads them.
template <class T> __global__ void bahdanau_forward_kernel(BahdanauForward<T> f) {
  const int64_t b = blockIdx.x;
  for (int64_t s = threadIdx.x; s < f.S; s += blockDim.x) f.weights[b * f.S + s] = f.score(b, s);
  __syncthreads();
  if (threadIdx.x == 0) f.normalize(b);  // S is a sentence's length: a short serial row
  __syncthreads();
  for (int64_t h = threadIdx.x; h < f.Hk; h += blockDim.x) {
    f.context[b * f.Hk + h] = T(0);
    for (int64_t s = 0; s < f.S; ++s) f.add_key(b, s, h);
  }
}

template <class T> __global__ void bahdanau_backward_kernel(BahdanauBackward<T> f) {
  const int64_t b = blockIdx.x;
  for (int64_t s = threadIdx.x; s < f.S; s += blockDim.x) {
    f.d_score[b * f.S + s] = f.weight_grad(b, s);
  }
  __syncthreads();
  if (threadIdx.x == 0) f.score_grads(b);
  __syncthreads();
  for (int64_t a = threadIdx.x; a < f.A; a += blockDim.x) {
    f.d_query[b * f.A + a] = f.d_v_rows[b * f.A + a] = T(0);
    for (int64_t s = 0; s < f.S; ++s) {
      if (f.padded(b, s)) {
        f.padded_projection_grad(b, s, a);
      } else {
        f.projection_grad(b, s, a);
      }
    }
  }
  for (int64_t i = threadIdx.x; i < f.S * f.Hk; i += blockDim.x) f.key_grad(b, i / f.Hk, i % f.Hk);
}
#else
// A GPU launch needs this file compiled by nvcc (CMake does whenever CUDA is on).
[[noreturn]] void no_cuda_here(Device device) {
  KILN_FAIL("bahdanau_attention on ", device.str(),
            ": this translation unit was not compiled by nvcc; compile it as CUDA to launch there");
}
#endif

// On the CPU a sentence costs ~S * A tanh: a handful of sentences already pays for the threads.
constexpr int64_t kSentenceGrain = 8;

}  // namespace

void bahdanau_forward(const BahdanauInputs& in, const Tensor& weights, const Tensor& context) {
  const int64_t B = in.keys.size(0), S = in.keys.size(1), Hk = in.keys.size(2),
                A = in.key_proj.size(2);
  const Device device = in.keys.device();
  if (B == 0) return;
  KILN_DISPATCH_FLOAT(in.keys.dtype(), "bahdanau_attention", [&] {
    using T = scalar_t;
    BahdanauForward<T> f{in.key_proj.data<T>(),
                         in.query.data<T>(),
                         in.v.data<T>(),
                         in.keys.data<T>(),
                         in.pad.data<T>(),
                         weights.data<T>(),
                         context.data<T>(),
                         S,
                         A,
                         Hk};
    if (device.is_cpu()) return parallel_for_cpu(B, f, kSentenceGrain);
#ifdef __CUDACC__
    profiler::ProfileScope scope("bahdanau_attention launch", profiler::Category::kernel);
    bahdanau_forward_kernel<T><<<static_cast<unsigned>(B), kAttentionThreads, 0, cuda::current_stream()>>>(f);
    KILN_CUDA_CHECK(cudaGetLastError());
#else
    no_cuda_here(device);
#endif
  });
}

void bahdanau_backward(const BahdanauInputs& in, const Tensor& weights, const Tensor& d_context,
                       const Tensor& d_weights, const BahdanauGrads& out) {
  const int64_t B = in.keys.size(0), S = in.keys.size(1), Hk = in.keys.size(2),
                A = in.key_proj.size(2);
  const Device device = in.keys.device();
  Tensor d_score = empty({B, S}, in.keys.options()), d_v_rows = empty({B, A}, in.keys.options());
  KILN_DISPATCH_FLOAT(in.keys.dtype(), "bahdanau_attention_backward", [&] {
    using T = scalar_t;
    BahdanauBackward<T> f{in.key_proj.data<T>(),
                          in.query.data<T>(),
                          in.v.data<T>(),
                          in.keys.data<T>(),
                          in.pad.data<T>(),
                          weights.data<T>(),
                          d_context.data<T>(),
                          d_weights.data<T>(),
                          d_score.data<T>(),
                          out.d_key_proj.data<T>(),
                          out.d_query.data<T>(),
                          d_v_rows.data<T>(),
                          out.d_keys.data<T>(),
                          S,
                          A,
                          Hk};
    if (B == 0) return;
    if (device.is_cpu()) return parallel_for_cpu(B, f, kSentenceGrain);
#ifdef __CUDACC__
    profiler::ProfileScope scope("bahdanau_attention_backward launch", profiler::Category::kernel);
    bahdanau_backward_kernel<T><<<static_cast<unsigned>(B), kAttentionThreads, 0, cuda::current_stream()>>>(f);
    KILN_CUDA_CHECK(cudaGetLastError());
#else
    no_cuda_here(device);
#endif
  });
  // dv sums over the sentences: a second, deterministic pass instead of atomics (STYLE 9). With
  // B = 0 it writes zeros.
  sum_dim(d_v_rows, 0, 1.0, out.d_v);
}

}  // namespace kiln::kernels
