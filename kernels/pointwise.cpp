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

template <class Op, class T, class Indexer> struct BinaryForwardFunctor {
  Op op;
  const T* a;
  const T* b;
  T* y;
  Indexer index;  // BroadcastIndexer, or SameShapeIndexer when a and b have y's shape
  KILN_HD void operator()(int64_t i) const {
    y[i] = op.forward(a[index.offset(0, i)], b[index.offset(1, i)]);
  }
};

// The common broadcasts of one operand's rows over the other's: y[r, c] = op(a[r, c], b[r / repeat,
// c]) or its mirror, over rows x contiguous columns, so the CPU loop vectorizes and no per-element
// index arithmetic is left (r / repeat is the same for a whole row). A bias row added to a batch
// is repeat = rows (b has one row); Bahdanau attention's keys [B, S, A] + query [B, 1, A] is
// repeat = S (each query row serves S rows of keys).
template <class Op, class T> struct BinaryRowBroadcastFunctor {
  Op op;
  const T* a;
  const T* b;
  T* y;
  int64_t cols, repeat;
  bool a_is_small;  // else b is
  KILN_HD void operator()(int64_t r, int64_t c) const {
    int64_t i = r * cols + c, small = (r / repeat) * cols + c;
    y[i] = a_is_small ? op.forward(a[small], b[i]) : op.forward(a[i], b[small]);
  }
};

// When `small` broadcasts over `full` as whole rows: right-aligned, the two shapes differ in one
// run of consecutive dims only, where `small` is 1 (leading dims `small` lacks count as 1s).
// Then cols = the product of `full`'s dims after the run and repeat = the product of the run;
// {0, 0} otherwise (or when the shapes are equal).
struct RowBroadcast {
  int64_t cols = 0, repeat = 0;
};
RowBroadcast row_broadcast(const Shape& small, const Shape& full) {
  if (small.size() > full.size()) return {};
  const size_t pad = full.size() - small.size();
  auto small_dim = [&](size_t d) { return d < pad ? int64_t{1} : small[d - pad]; };
  size_t begin = full.size(), end = 0;  // the run where the shapes differ
  for (size_t d = 0; d < full.size(); ++d) {
    if (small_dim(d) == full[d]) continue;
    if (small_dim(d) != 1) return {};
    begin = std::min(begin, d);
    end = d + 1;
  }
  if (end == 0) return {};
  RowBroadcast out{1, 1};
  for (size_t d = begin; d < end; ++d) {
    if (small_dim(d) == full[d] && full[d] != 1) return {};  // a gap: two runs
    out.repeat *= full[d];
  }
  for (size_t d = end; d < full.size(); ++d) out.cols *= full[d];
  return out;
}

template <class Op, class T, class Indexer> struct BinaryBackwardFunctor {
  Op op;
  const T* a;
  const T* b;
  const T* y;
  const T* grad_y;
  T* grad_a;  // at y's shape; null when not wanted
  T* grad_b;
  Indexer index;  // as BinaryForwardFunctor's
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
  RowBroadcast rows = a_full && !b_full   ? row_broadcast(b.shape(), y.shape())
                      : b_full && !a_full ? row_broadcast(a.shape(), y.shape())
                                          : RowBroadcast{};
  if (rows.cols > 0 && y.numel() > 0) {
    KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
      with_binary_op(kind, [&](auto op) {
        using Functor = BinaryRowBroadcastFunctor<decltype(op), scalar_t>;
        parallel_for_rows(y.device(), y.numel() / rows.cols, rows.cols,
                          Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(),
                                  rows.cols, rows.repeat, !a_full});
      });
    });
    return;
  }
  BroadcastIndexer broadcast = BroadcastIndexer::make(y.shape(), {&a.shape(), &b.shape()});
  KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
    with_binary_op(kind, [&](auto op) {
      with_indexer(broadcast, [&](auto index) {
        using Functor = BinaryForwardFunctor<decltype(op), scalar_t, decltype(index)>;
        parallel_for(
            y.device(), y.numel(),
            Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(), index});
      });
    });
  });
}

void binary_backward(BinaryKind kind, const Tensor& a, const Tensor& b, const Tensor& y,
                     const Tensor& grad_y, const Tensor& grad_a_full, const Tensor& grad_b_full) {
  BroadcastIndexer broadcast = BroadcastIndexer::make(y.shape(), {&a.shape(), &b.shape()});
  KILN_DISPATCH_FLOAT(y.dtype(), binary_name(kind), [&] {
    with_binary_op(kind, [&](auto op) {
      with_indexer(broadcast, [&](auto index) {
        using Functor = BinaryBackwardFunctor<decltype(op), scalar_t, decltype(index)>;
        parallel_for(y.device(), y.numel(),
                     Functor{op, a.data<scalar_t>(), b.data<scalar_t>(), y.data<scalar_t>(),
                             grad_y.data<scalar_t>(), mutable_or_null<scalar_t>(grad_a_full),
                             mutable_or_null<scalar_t>(grad_b_full), index});
      });
    });
  });
}

}  // namespace kiln::kernels
