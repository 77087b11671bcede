// CPU clip_grad_norm (kernels/clip_norm.h): the same chunking and summation order as on CUDA's
// first pass, partials summed in chunk order.
#include "kernels/clip_norm.h"

#include <cmath>

#include "core/profiler.h"
#include "kernels/dispatch.h"

namespace kiln::kernels {

namespace {

template <class T>
void clip_grad_norm_cpu(const std::vector<Tensor>& grads, T max_norm, const Tensor& norm,
                        const Tensor& scale, bool scale_grads) {
  std::vector<std::pair<const T*, int64_t>> chunks;  // (start, length)
  for (const Tensor& g : grads) {
    for (int64_t begin = 0; begin < g.numel(); begin += kMultiTensorChunk) {
      chunks.push_back({g.data<T>() + begin, std::min(kMultiTensorChunk, g.numel() - begin)});
    }
  }
  std::vector<T> partial(chunks.size());
  int64_t elements = 0;
  for (const Tensor& g : grads) elements += g.numel();
  // Serial below the grain like every other loop (it forked on every step of the small model).
  const int threads = threads_for(elements);
  profiler::ProfileScope scope("clip_norm partials", profiler::Category::kernel, threads > 1);
  scope.add_items(static_cast<int64_t>(chunks.size()));
  cpu_for(threads, static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    const T* x = chunks[c].first;
    T total = T(0);
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < chunks[c].second; ++i) total += x[i] * x[i];
    partial[c] = total;
  });
  T total = T(0);
  for (T p : partial) total += p;
  T n = std::sqrt(total);
  T s = clip_scale(n, max_norm);
  norm.data<T>()[0] = n;
  scale.data<T>()[0] = s;
  if (!clip_scales_gradients(s) || !scale_grads) return;
  for (const Tensor& g : grads) {
    T* data = g.data<T>();
    parallel_for_cpu(g.numel(), [&](int64_t i) { data[i] *= s; });
  }
}

}  // namespace

void clip_grad_norm(MultiTensorPlan& plan, const std::vector<Tensor>& grads, double max_norm,
                    const Tensor& norm, const Tensor& scale, bool scale_grads) {
  KILN_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  plan.prepare({grads}, "clip_grad_norm");
  if (!grads.empty() && grads[0].device().is_cuda()) {
    clip_grad_norm_cuda(plan, grads, max_norm, norm, scale, scale_grads);
    return;
  }
  KILN_DISPATCH_FLOAT(norm.dtype(), "clip_grad_norm", [&] {
    clip_grad_norm_cpu<scalar_t>(grads, scalar_t(max_norm), norm, scale, scale_grads);
  });
}

#ifndef KILN_WITH_CUDA
void clip_grad_norm_cuda(MultiTensorPlan&, const std::vector<Tensor>& grads, double, const Tensor&,
                         const Tensor&, bool) {
  KILN_FAIL("clip_grad_norm on ", grads[0].device().str(),
            ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
