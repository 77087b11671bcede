// softmax / log_softmax over the last dim; both backward formulas read only the saved output
// (kernels/softmax.h).
#include "kernels/softmax.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"

namespace kiln {

using autograd::TensorList;

namespace {
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  profiler::ProfileScope profile_scope(log ? "log_softmax" : "softmax", profiler::Category::op);
  const char* name = log ? "log_softmax" : "softmax";
  ops_detail::check_floating(name, x);
  KILN_CHECK(x.dim() >= 1 && x.size(-1) > 0, name,
             ": expected a non-empty tensor of rank >= 1, got ", x.describe());
  KILN_CHECK(normalize_dim(dim, x.dim(), name) == x.dim() - 1, name,
             ": only the last dim is supported, got dim ", dim, " for ", x.describe());
  Tensor y = empty(x.shape(), x.options());
  kernels::softmax_forward(x, y, log);
  if (autograd::needs_grad({x})) {
    Tensor saved_y = y.detach();
    autograd::record(name, {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(saved_y.shape(), saved_y.options());
      kernels::softmax_backward(saved_y, grads[0], grad_x, log);
      return TensorList{grad_x};
    });
  }
  return y;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace kiln
