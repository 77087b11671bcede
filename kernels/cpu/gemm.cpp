#include <cblas.h>

#include "kernels/gemm.h"

namespace kiln::kernels {

namespace {
// cblas takes int dimensions; refuse sizes it cannot express rather than truncate them.
int checked_int(int64_t value, const char* what) {
  KILN_CHECK(value >= 0 && value <= INT32_MAX, "matmul: ", what, " = ", value, " exceeds the BLAS int range");
  return static_cast<int>(value);
}
}  // namespace

void gemm_cpu(const GemmShape& s, double alpha, const Tensor& a, const Tensor& b, double beta, const Tensor& c) {
  int m = checked_int(s.m, "M"), n = checked_int(s.n, "N"), k = checked_int(s.k, "K");
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans, tb = s.trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t i = 0; i < s.batch; ++i) {
    if (c.dtype() == DType::f32) {
      cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a.data<float>() + i * s.stride_a, lda,
                  b.data<float>() + i * s.stride_b, ldb, static_cast<float>(beta), c.data<float>() + i * s.stride_c, n);
    } else {
      cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data<double>() + i * s.stride_a, lda,
                  b.data<double>() + i * s.stride_b, ldb, beta, c.data<double>() + i * s.stride_c, n);
    }
  }
}

}  // namespace kiln::kernels
