// matmul through kernels::gemm. With C = op(A) op(B):
//   d op(A) = dC op(B)^T   and   d op(B) = op(A)^T dC,
// and when A is stored transposed its gradient is the transpose of d op(A), which is again one
// GEMM with flags (no transposed copies). For a 3-D A times a 2-D B, the batch is folded into M.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"
#include "kernels/gemm.h"

namespace kiln {

using autograd::TensorList;

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  profiler::ProfileScope profile_scope("matmul", profiler::Category::op);
  ops_detail::check_compatible("matmul", a, b);
  ops_detail::check_floating("matmul", a);
  KILN_CHECK((a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3) ||
                 (a.dim() == 3 && b.dim() == 2),
             "matmul: expected 2-D x 2-D, 3-D x 3-D or 3-D x 2-D operands, got ", a.describe(),
             " and ", b.describe());
  KILN_CHECK(!(a.dim() == 3 && b.dim() == 2 && trans_a),
             "matmul: a 3-D a with a 2-D b cannot be used transposed (trans_a); got ",
             a.describe());
  kernels::GemmShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  bool batched = a.dim() == 3 && b.dim() == 3;
  s.batch = batched ? a.size(0) : 1;
  int64_t a_rows = a.size(-2), a_cols = a.size(-1);
  if (a.dim() == 3 && b.dim() == 2) a_rows *= a.size(0);  // fold the batch into M
  s.m = trans_a ? a_cols : a_rows;
  s.k = trans_a ? a_rows : a_cols;
  int64_t b_k = trans_b ? b.size(-1) : b.size(-2);
  s.n = trans_b ? b.size(-2) : b.size(-1);
  KILN_CHECK(b_k == s.k, "matmul: inner dimensions differ: ", a.describe(),
             (trans_a ? " (transposed)" : ""), " x ", b.describe(),
             (trans_b ? " (transposed)" : ""), " (", s.k, " vs ", b_k, ")");
  KILN_CHECK(!batched || a.size(0) == b.size(0), "matmul: batch sizes differ: ", a.describe(),
             " vs ", b.describe());
  s.stride_a = batched ? s.m * s.k : 0;
  s.stride_b = batched ? s.k * s.n : 0;
  s.stride_c = s.m * s.n;
  Shape out_shape =
      a.dim() == 3 ? Shape{a.size(0), s.m / (batched ? 1 : a.size(0)), s.n} : Shape{s.m, s.n};
  Tensor c = empty(out_shape, a.options());
  kernels::gemm(s, 1.0, a, b, 0.0, c);

  if (autograd::needs_grad({a, b})) {
    bool grad_a = a.requires_grad(), grad_b = b.requires_grad();
    Tensor saved_a = grad_b ? a.detach() : Tensor(), saved_b = grad_a ? b.detach() : Tensor();
    Shape a_shape = a.shape(), b_shape = b.shape();
    autograd::record("matmul", {a, b}, {c}, [=](const TensorList& grads) {
      const Tensor& dc = grads[0];
      Tensor da, db;
      // The products below are exactly the formulas of the header comment, spelled with flags.
      if (grad_a) {
        da = trans_a ? matmul(saved_b, dc, trans_b, true) : matmul(dc, saved_b, false, !trans_b);
      }
      if (grad_b) {
        if (a_shape.size() == 3 && b_shape.size() == 2) {
          // Sum over the folded batch: one GEMM over [B*M, K]^T x [B*M, N].
          Tensor a2 = reshape(saved_a, {-1, a_shape[2]}), dc2 = reshape(dc, {-1, dc.size(-1)});
          db = trans_b ? matmul(dc2, a2, true, false) : matmul(a2, dc2, true, false);
        } else {
          db = trans_b ? matmul(dc, saved_a, true, trans_a) : matmul(saved_a, dc, !trans_a, false);
        }
      }
      return TensorList{da, db};
    });
  }
  return c;
}

}  // namespace kiln
