// Reductions. sum/mean backward broadcast the gradient back (kernels::expand, scaled by 1/R for
// mean); max backward routes each row's gradient to its (first) argmax.
#include "kernels/reduce.h"
#include "kernels/softmax.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"
#include "kernels/copy.h"

namespace kiln {

using autograd::TensorList;

namespace {

Tensor reduce_all(const Tensor& x, bool average, const char* name) {
  profiler::ProfileScope profile_scope(name, profiler::Category::op);
  ops_detail::check_floating(name, x);
  KILN_CHECK(x.numel() > 0 || !average, name, ": mean of an empty tensor ", x.describe());
  double scale = average ? 1.0 / static_cast<double>(x.numel()) : 1.0;
  Tensor y = empty({}, x.options());
  if (x.numel() == 0) {
    fill_(y, 0.0);
  } else {
    kernels::sum_all(x, scale, y);
  }
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record(name, {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(x_shape, grads[0].options());
      kernels::expand(grads[0], scale, grad_x);
      return TensorList{grad_x};
    });
  }
  return y;
}

Tensor reduce_dim(const Tensor& x, int64_t dim, bool keepdim, bool average, const char* name) {
  profiler::ProfileScope profile_scope(name, profiler::Category::op);
  ops_detail::check_floating(name, x);
  int d = normalize_dim(dim, x.dim(), name);
  double scale = average ? 1.0 / static_cast<double>(x.size(d)) : 1.0;
  Shape kept = x.shape();
  kept[d] = 1;
  Tensor y = empty(kept, x.options());
  kernels::sum_dim(x, d, scale, y);
  if (!keepdim) {
    Shape dropped = x.shape();
    dropped.erase(dropped.begin() + d);
    y = view_as_shape(y, dropped);
  }
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record(name, {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(x_shape, grads[0].options());
      kernels::expand(view_as_shape(grads[0], kept), scale, grad_x);
      return TensorList{grad_x};
    });
  }
  return y;
}

void check_last_dim(const Tensor& x, int64_t dim, const char* name) {
  ops_detail::check_floating(name, x);
  KILN_CHECK(x.dim() >= 1 && x.size(-1) > 0, name,
             ": expected a non-empty tensor of rank >= 1, got ", x.describe());
  KILN_CHECK(normalize_dim(dim, x.dim(), name) == x.dim() - 1, name,
             ": only the last dim is supported, got dim ", dim, " for ", x.describe());
}

Shape reduced_last(const Tensor& x, bool keepdim) {
  Shape shape = x.shape();
  if (keepdim)
    shape.back() = 1;
  else
    shape.pop_back();
  return shape;
}

}  // namespace

Tensor sum(const Tensor& x) { return reduce_all(x, false, "sum"); }
Tensor mean(const Tensor& x) { return reduce_all(x, true, "mean"); }
Tensor sum(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_dim(x, dim, keepdim, false, "sum");
}
Tensor mean(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_dim(x, dim, keepdim, true, "mean");
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  profiler::ProfileScope profile_scope("max", profiler::Category::op);
  check_last_dim(x, dim, "max");
  Shape shape = reduced_last(x, keepdim);
  Tensor values = empty(shape, x.options());
  Tensor indices = empty(shape, {DType::i64, x.device()});
  kernels::max_last(x, values, indices);
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record("max", {x}, {values}, [=](const TensorList& grads) {
      Tensor grad_x = empty(x_shape, grads[0].options());
      kernels::max_last_backward(indices, grads[0], grad_x);
      return TensorList{grad_x};
    });
  }
  return values;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  profiler::ProfileScope profile_scope("argmax", profiler::Category::op);
  check_last_dim(x, dim, "argmax");
  Shape shape = reduced_last(x, keepdim);
  Tensor values = empty(shape, x.options());
  Tensor indices = empty(shape, {DType::i64, x.device()});
  kernels::max_last(x, values, indices);
  return indices;
}

namespace {
// topk and log_softmax_topk: each row's k best (k capped at the row), by `kernel`.
template <class Kernel>
std::pair<Tensor, Tensor> row_top_k(const Tensor& x, int64_t k, const char* name, Kernel kernel) {
  profiler::ProfileScope profile_scope(name, profiler::Category::op);
  check_last_dim(x, -1, name);
  KILN_CHECK(k >= 1, name, ": k must be >= 1, got ", k);
  KILN_CHECK(!autograd::needs_grad({x}), name, ": not differentiable; call it without grad");
  k = std::min(k, x.size(-1));
  Shape shape = x.shape();
  shape.back() = k;
  Tensor values = empty(shape, x.options());
  Tensor indices = empty(shape, {DType::i64, x.device()});
  kernel(x, k, values, indices);
  return {values, indices};
}
}  // namespace

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k) {
  return row_top_k(x, k, "topk", kernels::top_k_last);
}

std::pair<Tensor, Tensor> log_softmax_topk(const Tensor& x, int64_t k, const Tensor& bias) {
  return row_top_k(x, k, "log_softmax_topk",
                   [&](const Tensor& in, int64_t top, const Tensor& values, const Tensor& indices) {
                     // After row_top_k's checks of the input.
                     if (bias.defined()) {
                       KILN_CHECK(bias.dim() == 1 && bias.size(0) == in.size(-1) &&
                                      bias.dtype() == in.dtype() && bias.device() == in.device(),
                                  "log_softmax_topk: bias must be [", in.size(-1),
                                  "] of the input's dtype and device, got ", bias.describe(),
                                  " for ", in.describe());
                       KILN_CHECK(!autograd::needs_grad({bias}),
                                  "log_softmax_topk: not differentiable; call it without grad");
                     }
                     kernels::log_softmax_top_k(in, top, values, indices, bias);
                   });
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  profiler::ProfileScope profile_scope("sum_to", profiler::Category::op);
  KILN_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "sum_to: ", x.describe(),
             " is not a broadcast of ", shape_str(shape));
  Tensor y = x;
  int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  if (lead > 0) {
    // Fold all leading dims into one and sum it away in one pass.
    Shape folded(x.shape().begin() + lead, x.shape().end());
    folded.insert(folded.begin(), -1);
    y = sum(reshape(y, folded), 0);
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && y.size(static_cast<int64_t>(d)) != 1)
      y = sum(y, static_cast<int64_t>(d), true);
  }
  return y;
}

}  // namespace kiln
