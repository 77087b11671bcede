#include "kernels/gemm.h"

namespace kiln::kernels {

void gemm(const GemmShape& shape, double alpha, const Tensor& a, const Tensor& b, double beta, const Tensor& c) {
  KILN_CHECK(is_floating(c.dtype()), "matmul: dtype ", dtype_name(c.dtype()), " is not supported (expected f32 or f64)");
  if (shape.m == 0 || shape.n == 0 || shape.batch == 0) return;
  if (c.device().is_cpu()) {
    gemm_cpu(shape, alpha, a, b, beta, c);
  } else {
    gemm_cuda(shape, alpha, a, b, beta, c);
  }
}

#ifndef KILN_WITH_CUDA
void gemm_cuda(const GemmShape&, double, const Tensor&, const Tensor&, double, const Tensor& c) {
  KILN_FAIL("matmul on ", c.device().str(), ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
