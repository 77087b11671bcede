// Pointwise ops: forward launches kernels/pointwise.h, backward right below it uses the same op
// struct's derivative. Broadcast gradients are summed back to each operand's shape.
#include "kernels/pointwise.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"

namespace kiln {

using autograd::TensorList;
using kernels::BinaryKind;
using kernels::UnaryKind;

namespace {

Tensor unary(UnaryKind kind, const Tensor& x, double scalar = 0.0) {
  profiler::ProfileScope profile_scope(kernels::unary_info(kind).name, profiler::Category::op);
  kernels::UnaryInfo info = kernels::unary_info(kind);
  ops_detail::check_floating(info.name, x);
  Tensor y = empty(x.shape(), x.options());
  kernels::unary_forward(kind, scalar, x, y);
  if (autograd::needs_grad({x})) {
    // Save only what the derivative reads (STYLE rule 11); saved tensors are detached so the
    // node never keeps its own output alive through a cycle.
    Tensor saved_x = info.uses_input ? x.detach() : Tensor();
    Tensor saved_y = info.uses_output ? y.detach() : Tensor();
    autograd::record(info.name, {x}, {y}, [=](const TensorList& grads) {
      Tensor grad_x = empty(grads[0].shape(), grads[0].options());
      kernels::unary_backward(kind, scalar, saved_x, saved_y, grads[0], grad_x);
      return TensorList{grad_x};
    });
  }
  return y;
}

Tensor binary(BinaryKind kind, const Tensor& a, const Tensor& b) {
  profiler::ProfileScope profile_scope(kernels::binary_name(kind), profiler::Category::op);
  const char* name = kernels::binary_name(kind);
  ops_detail::check_compatible(name, a, b);
  ops_detail::check_floating(name, a);
  Tensor y = empty(broadcast_shapes(a.shape(), b.shape(), name), a.options());
  kernels::binary_forward(kind, a, b, y);
  if (!autograd::needs_grad({a, b})) return y;
  bool grad_a = a.requires_grad(), grad_b = b.requires_grad();
  if (kind == BinaryKind::add || kind == BinaryKind::sub) {
    // d/da = g, d/db = +-g: nothing is saved, and the incoming gradient is summed straight to each
    // operand's shape (an operand of y's shape gets g itself: the engine never writes into a
    // gradient it is given).
    Shape a_shape = a.shape(), b_shape = b.shape();
    autograd::record(name, {a, b}, {y}, [=](const TensorList& grads) {
      Tensor grad_b_out = grad_b ? sum_to(grads[0], b_shape) : Tensor();
      if (grad_b_out.defined() && kind == BinaryKind::sub) grad_b_out = neg(grad_b_out);
      return TensorList{grad_a ? sum_to(grads[0], a_shape) : Tensor(), grad_b_out};
    });
    return y;
  }
  Tensor saved_a = a.detach(), saved_b = b.detach(), saved_y = y.detach();
  autograd::record(name, {a, b}, {y}, [=](const TensorList& grads) {
    Tensor full_a = grad_a ? empty(saved_y.shape(), saved_y.options()) : Tensor();
    Tensor full_b = grad_b ? empty(saved_y.shape(), saved_y.options()) : Tensor();
    kernels::binary_backward(kind, saved_a, saved_b, saved_y, grads[0], full_a, full_b);
    return TensorList{grad_a ? sum_to(full_a, saved_a.shape()) : Tensor(),
                      grad_b ? sum_to(full_b, saved_b.shape()) : Tensor()};
  });
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryKind::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryKind::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryKind::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryKind::div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryKind::pow, a, b); }

Tensor neg(const Tensor& x) { return unary(UnaryKind::neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryKind::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryKind::log, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryKind::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryKind::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryKind::relu, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryKind::sqrt, x); }
Tensor pow(const Tensor& x, double p) { return unary(UnaryKind::pow_scalar, x, p); }
Tensor add(const Tensor& x, double s) { return unary(UnaryKind::add_scalar, x, s); }
Tensor mul(const Tensor& x, double s) { return unary(UnaryKind::mul_scalar, x, s); }
Tensor rsub(double s, const Tensor& x) { return unary(UnaryKind::rsub_scalar, x, s); }
Tensor rdiv(double s, const Tensor& x) { return unary(UnaryKind::rdiv_scalar, x, s); }

}  // namespace kiln
