// Global gradient-norm clipping over a list of tensors, deterministic, in two passes:
//   1. partial[c] = sum of g^2 over chunk c (kMultiTensorChunk elements of one tensor)
//   2. norm = sqrt(sum_c partial[c]) in a fixed order; scale = max_norm / (norm + 1e-6) when
//      norm > max_norm, NaN when the norm is not finite, else 1; every g *= scale when scale < 1.
// On CUDA each pass is ONE launch for any number of tensors: every block of the second launch
// re-reduces the (few thousand) partials itself, so no third launch and no host sync. A
// non-finite norm leaves the gradients untouched; the caller sees it in `norm`.
// With scale_grads = false pass 2 only writes norm and scale: an optimizer that multiplies the
// gradients by `scale` inside its own update (Optimizer::step(scale)) saves the pass.
// Bytes: pass 1 reads every gradient once; pass 2 reads and writes them once when clipping.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"
#include "kernels/multi_tensor.h"

namespace kiln::kernels {

// norm, scale: device scalars ([]) in the gradients' dtype, written with =.
void clip_grad_norm(MultiTensorPlan& plan, const std::vector<Tensor>& grads, double max_norm,
                    const Tensor& norm, const Tensor& scale, bool scale_grads = true);
void clip_grad_norm_cuda(MultiTensorPlan& plan, const std::vector<Tensor>& grads, double max_norm,
                         const Tensor& norm, const Tensor& scale, bool scale_grads);

// The shared decision of pass 2, on host or device: NaN for a non-finite norm (inf - inf and
// NaN - NaN are NaN), which an optimizer given the scale reads as "drop this step"; no gradient is
// scaled unless the scale is below 1 (false for NaN).
template <class T> KILN_HD inline T clip_scale(T norm, T max_norm) {
  if (!math::is_finite(norm)) return norm - norm;
  return norm > max_norm ? max_norm / (norm + T(1e-6)) : T(1);
}
template <class T> KILN_HD inline bool clip_scales_gradients(T scale) { return scale < T(1); }

}  // namespace kiln::kernels
