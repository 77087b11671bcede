// dropout: the mask is a function of (seed, offset), so backward regenerates it
// (kernels/dropout.h).
#include "kernels/dropout.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"
#include "core/random.h"

namespace kiln {

using autograd::TensorList;

Tensor dropout(const Tensor& x, double p, bool training) {
  profiler::ProfileScope profile_scope("dropout", profiler::Category::op);
  ops_detail::check_floating("dropout", x);
  KILN_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0) return x;
  Generator& gen = default_generator();
  // Reserves a counter per element though the mask reads four words per counter: the draws after
  // this one start where they always did.
  uint64_t seed = gen.seed(), offset = gen.advance(x.numel());
  // Inside a captured CUDA graph the seed is read from the device at each replay.
  const uint64_t* seed_cell = x.device().is_cpu() ? nullptr : gen.seed_cell();
  Tensor y = empty(x.shape(), x.options());
  kernels::dropout(x, y, p, seed, offset, seed_cell);
  if (autograd::needs_grad({x})) {
    autograd::record("dropout", {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(grads[0].shape(), grads[0].options());
      kernels::dropout(grads[0], grad_x, p, seed, offset, seed_cell);
      return TensorList{grad_x};
    });
  }
  return y;
}

}  // namespace kiln
