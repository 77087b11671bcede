// Gathers and selections. embedding/index_select backward is a deterministic scatter-add of rows
// (kernels/index.h); where/masked_fill route the gradient by the condition.
#include "kernels/index.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"

namespace kiln {

using autograd::TensorList;

Tensor embedding(const Tensor& weight, const Tensor& index, int64_t padding_idx,
                 const Tensor& host_index) {
  profiler::ProfileScope profile_scope("embedding", profiler::Category::op);
  ops_detail::check_defined("embedding", weight, "weight");
  ops_detail::check_defined("embedding", index, "index");
  KILN_CHECK(index.dtype() == DType::i32 || index.dtype() == DType::i64,
             "embedding: index must be i32 or i64, got ", index.describe());
  KILN_CHECK(weight.dim() >= 1, "embedding: weight must have rank >= 1, got ", weight.describe());
  KILN_CHECK(weight.device() == index.device(), "embedding: device mismatch: weight ",
             weight.describe(), " vs index ", index.describe());
  kernels::check_index_range(index, weight.size(0), "embedding", host_index);
  Shape shape = index.shape();
  shape.insert(shape.end(), weight.shape().begin() + 1, weight.shape().end());
  Tensor out = empty(shape, weight.options());
  kernels::gather_rows(weight, index, out);
  if (autograd::needs_grad({weight})) {
    Tensor saved_index = index.detach();
    Shape weight_shape = weight.shape();
    autograd::record("embedding", {weight, index}, {out}, [=](const TensorList& grads) {
      Tensor grad_weight = zeros(weight_shape, grads[0].options());
      kernels::scatter_add_rows(grads[0], saved_index, grad_weight, padding_idx, host_index);
      return TensorList{grad_weight, Tensor()};
    });
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  profiler::ProfileScope profile_scope("index_select", profiler::Category::op);
  ops_detail::check_defined("index_select", x, "input");
  ops_detail::check_defined("index_select", index, "index");
  KILN_CHECK(x.dim() >= 1 && normalize_dim(dim, x.dim(), "index_select") == 0,
             "index_select: only dim 0 is supported, got dim ", dim, " for ", x.describe());
  KILN_CHECK(index.dim() == 1, "index_select: index must be 1-D, got ", index.describe());
  return embedding(x, index);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  profiler::ProfileScope profile_scope("where", profiler::Category::op);
  ops_detail::check_compatible("where", a, b);
  ops_detail::check_defined("where", cond, "condition");
  KILN_CHECK(cond.device() == a.device(), "where: device mismatch: condition ", cond.describe(),
             " vs ", a.describe());
  Shape shape =
      broadcast_shapes(broadcast_shapes(a.shape(), b.shape(), "where"), cond.shape(), "where");
  Tensor y = empty(shape, a.options());
  kernels::where(cond, a, b, y);
  if (autograd::needs_grad({a, b})) {
    bool grad_a = a.requires_grad(), grad_b = b.requires_grad();
    Tensor saved_cond = cond.detach();
    Shape a_shape = a.shape(), b_shape = b.shape();
    autograd::record("where", {cond, a, b}, {y}, [=](const TensorList& grads) {
      Tensor full_a = grad_a ? empty(grads[0].shape(), grads[0].options()) : Tensor();
      Tensor full_b = grad_b ? empty(grads[0].shape(), grads[0].options()) : Tensor();
      kernels::where_backward(saved_cond, grads[0], full_a, full_b);
      return TensorList{Tensor(), grad_a ? sum_to(full_a, a_shape) : Tensor(),
                        grad_b ? sum_to(full_b, b_shape) : Tensor()};
    });
  }
  return y;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  profiler::ProfileScope profile_scope("masked_fill", profiler::Category::op);
  ops_detail::check_floating("masked_fill", x);
  ops_detail::check_defined("masked_fill", mask, "mask");
  KILN_CHECK(broadcast_shapes(mask.shape(), x.shape(), "masked_fill") == x.shape(),
             "masked_fill: mask ", mask.describe(), " does not broadcast to the input ",
             x.describe());
  return where(mask, scalar_tensor(value, x.options()), x);
}

}  // namespace kiln
