// Shape ops and copies. reshape, narrow and select are views (shared storage); transpose, cat,
// stack, clone and to() copy. Each backward is the inverse movement of the gradient.
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"
#include "kernels/copy.h"

namespace kiln {

using autograd::TensorList;

Tensor reshape(const Tensor& x, Shape shape) {
  ops_detail::check_defined("reshape", x, "input");
  int infer = -1;
  int64_t known = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      KILN_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(d);
    } else {
      KILN_CHECK(shape[d] >= 0, "reshape: invalid size ", shape[d], " in ", shape_str(shape));
      known *= shape[d];
    }
  }
  if (infer >= 0) {
    KILN_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot view ", x.describe(), " as ",
               shape_str(shape));
    shape[infer] = x.numel() / known;
  }
  Tensor y = view_as_shape(x, shape);
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record("reshape", {x}, {y}, [=](const TensorList& grads) {
      return TensorList{view_as_shape(grads[0], x_shape)};
    });
  }
  return y;
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  profiler::ProfileScope profile_scope("transpose", profiler::Category::op);
  ops_detail::check_defined("transpose", x, "input");
  int d0 = normalize_dim(dim0, x.dim(), "transpose"),
      d1 = normalize_dim(dim1, x.dim(), "transpose");
  std::vector<int> order(x.dim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[d0], order[d1]);
  Shape shape = x.shape();
  std::swap(shape[d0], shape[d1]);
  Tensor y = empty(shape, x.options());
  kernels::permute(x, order, y);
  if (autograd::needs_grad({x})) {
    autograd::record("transpose", {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(grads[0].shape(), grads[0].options());
      std::swap(grad_x.impl().shape[d0], grad_x.impl().shape[d1]);
      kernels::permute(grads[0], order, grad_x);  // a swap is its own inverse
      return TensorList{grad_x};
    });
  }
  return y;
}

Tensor narrow(const Tensor& x, int64_t start, int64_t length) {
  ops_detail::check_defined("narrow", x, "input");
  Tensor y = view_rows(x, start, length);
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record("narrow", {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = zeros(x_shape, grads[0].options());
      copy_(view_rows(grad_x, start, length), grads[0]);
      return TensorList{grad_x};
    });
  }
  return y;
}

Tensor select(const Tensor& x, int64_t index) {
  ops_detail::check_defined("select", x, "input");
  KILN_CHECK(x.dim() >= 1, "select: expected a tensor of rank >= 1, got ", x.describe());
  KILN_CHECK(index >= -x.size(0) && index < x.size(0), "select: index ", index,
             " is out of range for ", x.describe(), " (dim 0 has ", x.size(0), ")");
  if (index < 0) index += x.size(0);
  Shape row_shape(x.shape().begin() + 1, x.shape().end());
  return reshape(narrow(x, index, 1), row_shape);
}

std::vector<Tensor> unbind(const Tensor& x) {
  ops_detail::check_defined("unbind", x, "input");
  KILN_CHECK(x.dim() >= 1 && x.size(0) >= 1,
             "unbind: expected a tensor of rank >= 1 with rows, got ", x.describe());
  Shape row_shape(x.shape().begin() + 1, x.shape().end());
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < x.size(0); ++i)
    rows.push_back(view_as_shape(view_rows(x, i, 1), row_shape));
  if (autograd::needs_grad({x})) {
    Shape x_shape = x.shape();
    autograd::record("unbind", {x}, rows, [=](const TensorList& grads) {
      // The engine gives a row nothing used zeros, so every row of the buffer is written.
      Tensor grad_x = empty(x_shape, grads[0].options());
      for (size_t i = 0; i < grads.size(); ++i) {
        copy_(view_as_shape(view_rows(grad_x, static_cast<int64_t>(i), 1), row_shape), grads[i]);
      }
      return TensorList{grad_x};
    });
  }
  return rows;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  profiler::ProfileScope profile_scope("cat", profiler::Category::op);
  KILN_CHECK(!tensors.empty(), "cat: expected at least one tensor");
  const Tensor& first = tensors[0];
  ops_detail::check_defined("cat", first, "tensor 0");
  int d = normalize_dim(dim, first.dim(), "cat");
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    ops_detail::check_compatible("cat", first, t);
    bool same_rank = t.dim() == first.dim();
    for (int64_t k = 0; same_rank && k < t.dim(); ++k)
      same_rank = k == d || t.size(k) == first.size(k);
    KILN_CHECK(same_rank, "cat: tensor ", i, " is ", t.describe(), " but tensor 0 is ",
               first.describe(), " (all sizes must match except along dim ", d, ")");
    shape[d] += t.size(d);
  }
  // View every tensor as [outer, size_d * inner]: a slab of columns in the output's rows.
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= shape[k];
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  Tensor y = empty(shape, first.options());
  int64_t out_ld = shape[d] * inner, column = 0;
  std::vector<int64_t> columns;
  for (const Tensor& t : tensors) {
    int64_t cols = t.size(d) * inner;
    kernels::block_copy(t, cols, 0, y, out_ld, column, outer, cols);
    columns.push_back(column);
    column += cols;
  }
  if (autograd::needs_grad(tensors)) {
    std::vector<Shape> shapes;
    std::vector<bool> wanted;
    for (const Tensor& t : tensors) {
      shapes.push_back(t.shape());
      wanted.push_back(t.requires_grad());
    }
    autograd::record("cat", tensors, {y}, [=](const TensorList& grads) {
      TensorList out(shapes.size());
      for (size_t i = 0; i < shapes.size(); ++i) {
        if (!wanted[i]) continue;
        out[i] = empty(shapes[i], grads[0].options());
        int64_t cols = shape_numel(shapes[i]) / outer;
        kernels::block_copy(grads[0], out_ld, columns[i], out[i], cols, 0, outer, cols);
      }
      return out;
    });
  }
  return y;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  profiler::ProfileScope profile_scope("stack", profiler::Category::op);
  KILN_CHECK(!tensors.empty(), "stack: expected at least one tensor");
  int64_t rank = tensors[0].dim() + 1;
  int d = normalize_dim(dim, rank, "stack");
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    ops_detail::check_defined("stack", tensors[i], "tensor");
    KILN_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " is ",
               tensors[i].describe(), " but tensor 0 is ", tensors[0].describe(),
               " (all shapes must be equal)");
    Shape shape = tensors[i].shape();
    shape.insert(shape.begin() + d, 1);
    expanded.push_back(reshape(tensors[i], shape));
  }
  return cat(expanded, d);
}

Tensor clone(const Tensor& x) {
  profiler::ProfileScope profile_scope("clone", profiler::Category::op);
  ops_detail::check_defined("clone", x, "input");
  Tensor y = copy_to(x, x.options());
  if (autograd::needs_grad({x})) {
    autograd::record("clone", {x}, {y}, [](const TensorList& grads) { return grads; });
  }
  return y;
}

Tensor to(const Tensor& x, Device device) {
  ops_detail::check_defined("to", x, "input");
  if (x.device() == device) return x;
  profiler::ProfileScope profile_scope("to(device)", profiler::Category::op);
  Tensor y = copy_to(x, {x.dtype(), device});
  if (autograd::needs_grad({x})) {
    Device source = x.device();
    autograd::record("to_device", {x}, {y}, [=](const TensorList& grads) {
      return TensorList{copy_to(grads[0], {grads[0].dtype(), source})};
    });
  }
  return y;
}

Tensor to(const Tensor& x, DType dtype) {
  ops_detail::check_defined("to", x, "input");
  if (x.dtype() == dtype) return x;
  profiler::ProfileScope profile_scope("to(dtype)", profiler::Category::op);
  Tensor y = copy_to(x, {dtype, x.device()});
  if (autograd::needs_grad({x})) {
    KILN_CHECK(is_floating(dtype), "to: converting ", x.describe(), " which requires grad to ",
               dtype_name(dtype), " would cut the gradient; detach() it first");
    DType source = x.dtype();
    autograd::record("to_dtype", {x}, {y}, [=](const TensorList& grads) {
      return TensorList{copy_to(grads[0], {source, grads[0].device()})};
    });
  }
  return y;
}

}  // namespace kiln
