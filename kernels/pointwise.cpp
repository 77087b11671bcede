// Launchers for kernels/pointwise.h. This file is compiled by nvcc when CUDA is on, so the same
// functors below run as an OpenMP loop or a CUDA kernel, chosen by the tensors' device.
#include "kernels/pointwise.h"

#include "kernels/broadcast.h"
#include "kernels/dispatch.h"

namespace kiln::kernels {

namespace {

template <class Op, class T> struct UnaryForwardFunctor {
  Op op;
  const T* x;
  T* y;
  KILN_HD void operator()(int64_t i) const { y[i] = op.forward(x[i]); }
};

template <class Op, class T> struct UnaryBackwardFunctor {
  Op op;
  const T* x;  // may be null when Op does not read it
  const T* y;  // likewise
  const T* grad_y;
  T* grad_x;
  KILN_HD void operator()(int64_t i) const {
    grad_x[i] = op.backward(x ? x[i] : T(0), y ? y[i] : T(0), grad_y[i]);
  }
};

template <class Op, class T> struct BinaryForwardFunctor {
  Op op;
  const T* a;
  const T* b;
  T* y;
  BroadcastIndexer index;
  KILN_HD void operator()(int64_t i) const {
    y[i] = op.forward(a[index.offset(0, i)], b[index.offset(1, i)]);
  }
};

// The common broadcast y[r, c] = op(a[r, c], b[c]) (a bias row added to a batch), or its mirror
// op(a[c], b[r, c]): rows x contiguous columns, so the CPU loop vectorizes and no per-element
// index arithmetic is left.
template <class Op, class T> struct BinaryRowBroadcastFunctor {
  Op op;
  const T* a;
  const T* b;
  T* y;
  int64_t cols;
  bool a_is_row;  // else b is the row
  KILN_HD void operator()(int64_t r, int64_t c) const {
    int64_t i = r * cols + c;
    y[i] = a_is_row ? op.forward(a[c], b[i]) : op.forward(a[i], b[c]);
  }
};

// Columns of the row when `small` broadcasts as a row over `full` (its shape, leading 1s dropped,
// is full's trailing dims); 0 otherwise.
int64_t row_broadcast_cols(const Shape& small, const Shape& full) {
  size_t first = 0;
  while (first < small.size() && small[first] == 1) ++first;
  size_t k = small.size() - first;
  if (k == 0 || k > full.size()) return 0;
  int64_t cols = 1;
  for (size_t d = 0; d < k; ++d) {
    if (small[first + d] != full[full.size() - k + d]) return 0;
    cols *= small[first + d];
  }
  return cols;
}

template <class Op, class T> struct BinaryBackwardFunctor {
  Op op;
  const T* a;
  const T* b;
  const T* y;
  const T* grad_y;
  T* grad_a;  // at y's shape; null when not wanted
  T* grad_b;
  BroadcastIndexer index;
  KILN_HD void operator()(int64_t i) const {
    T av = a[index.offset(0, i)], bv = b[index.offset(1, i)];
    if (grad_a) grad_a[i] = op.grad_a(av, bv, y[i], grad_y[i]);
    if (grad_b) grad_b[i] = op.grad_b(av, bv, y[i], grad_y[i]);
  }
};

// Calls fn(op) with the op struct for `kind`.
template <class Fn> auto with_unary_op(UnaryKind kind, double s, Fn&& fn) {
  switch (kind) {
    case UnaryKind::neg: return fn(NegOp{});
    case UnaryKind::exp: return fn(ExpOp{});
    case UnaryKind::log: return fn(LogOp{});
    case UnaryKind::tanh: return fn(TanhOp{});
    case UnaryKind::sigmoid: return fn(SigmoidOp{});
    case UnaryKind::relu: return fn(ReluOp{});
    case UnaryKind::sqrt: return fn(SqrtOp{});
    case UnaryKind::pow_scalar: return fn(PowScalarOp{s});
    case UnaryKind::add_scalar: return fn(AddScalarOp{s});
    case UnaryKind::mul_scalar: return fn(MulScalarOp{s});
    case UnaryKind::rsub_scalar: return fn(RSubScalarOp{s});
    case UnaryKind::rdiv_scalar: return fn(RDivScalarOp{s});
  }
  KILN_FAIL("unary op: unknown kind");
}

template <class Fn> auto with_binary_op(BinaryKind kind, Fn&& fn) {
  switch (kind) {
    case BinaryKind::add: return fn(AddOp{});
    case BinaryKind::sub: return fn(SubOp{});
    case BinaryKind::mul: return fn(MulOp{});
    case BinaryKind::div: return fn(DivOp{});
    case BinaryKind::pow: return fn(PowOp{});
  }
  KILN_FAIL("binary op: unknown kind");
}

template <class T> const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <class T> T* mutable_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

UnaryInfo unary_info(UnaryKind kind) {
  static const char* names[] = {"neg",        "exp",        "log",         "tanh",
                                "sigmoid",    "relu",       "sqrt",        "pow_scalar",
                                "add_scalar", "mul_scalar", "rsub_scalar", "rdiv_scalar"};
  return with_unary_op(kind, 0.0, [&](auto op) {
    using Op = decltype(op);
    return UnaryInfo{names[static_cast<int>(kind)], Op::kUsesInput, Op::kUsesOutput};
  });
}

const char* binary_name(BinaryKind kind) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow"};
  return names[static_cast<int>(kind)];
}

void unary_forward(UnaryKind kind, double scalar, const Tensor& x, const Tensor& y) {
  KILN_DISPATCH_FLOAT(x.dtype(), unary_info(kind).name, [&] {
    with_unary_op(kind, scalar, [&](auto op) {
      using Functor = UnaryForwardFunctor<decltype(op), scalar_t>;
      parallel_for(x.device(), x.numel(), Functor{op, x.data<scalar_t>(), y.data<scalar_t>()});
    });
  });
}

void unary_backward(UnaryKind kind, double scalar, const Tensor& x, const Tensor& y,
                    const Tensor& grad_y, const Tensor& grad_x) {
  KILN_DISPATCH_FLOAT(grad_y.dtype(), unary_info(kind).name, [&] {
    with_unary_op(kind, scalar, [&](auto op) {
      using Functor = UnaryBackwardFunctor<decltype(op), scalar_t>;
      parallel_for(grad_y.device(), grad_y.numel(),
                   Functor{op, data_or_null<scalar_t>(x), data_or_null<scalar_t>(y),
                           grad_y.data<scalar_t>(), grad_x.data<scalar_t>()});
    });
  });
}

void binary_forward(BinaryKind kind, const Tensor& a, const Tensor& b, const Tensor& y) {
  bool a_full = a.shape() == y.shape(), b_full = b.shape() == y.shape();
  int64_t row_cols = a_full && !b_full   ? row_broadcast_cols(b.shape(), y.shape())
                     : b_full && !a_full ? row_broadcast_cols(a.shape(), y.shape())
                                         : 0;
  if (row_cols > 0) {
    KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
      with_binary_op(kind, [&](auto op) {
        using Functor = BinaryRowBroadcastFunctor<decltype(op), scalar_t>;
        parallel_for_rows(y.device(), y.numel() / row_cols, row_cols,
                          Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(),
                                  row_cols, !a_full});
      });
    });
    return;
  }
  BroadcastIndexer index = BroadcastIndexer::make(y.shape(), {&a.shape(), &b.shape()});
  KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
    with_binary_op(kind, [&](auto op) {
      using Functor = BinaryForwardFunctor<decltype(op), scalar_t>;
      parallel_for(y.device(), y.numel(),
                   Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(), index});
    });
  });
}

void binary_backward(BinaryKind kind, const Tensor& a, const Tensor& b, const Tensor& y,
                     const Tensor& grad_y, const Tensor& grad_a_full, const Tensor& grad_b_full) {
  BroadcastIndexer index = BroadcastIndexer::make(y.shape(), {&a.shape(), &b.shape()});
  KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
    with_binary_op(kind, [&](auto op) {
      using Functor = BinaryBackwardFunctor<decltype(op), scalar_t>;
      parallel_for(y.device(), y.numel(),
                   Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(),
                           grad_y.data<scalar_t>(), mutable_or_null<scalar_t>(grad_a_full),
                           mutable_or_null<scalar_t>(grad_b_full), index});
    });
  });
}

}  // namespace kiln::kernels
