#include "kernels/gemm.h"

#include <cblas.h>

namespace kiln::kernels {

namespace {
// cblas takes int dimensions; refuse sizes it cannot express rather than truncate them.
int checked_int(int64_t value, const char* what) {
  KILN_CHECK(value >= 0 && value <= INT32_MAX, "matmul: ", what, " = ", value,
             " exceeds the BLAS int range");
  return static_cast<int>(value);
}
}  // namespace

void gemm_cpu(DType dtype, const GemmShape& s, double alpha, const void* a, const void* b,
              double beta, void* c) {
  int m = checked_int(s.m, "M"), n = checked_int(s.n, "N"), k = checked_int(s.k, "K");
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans,
                  tb = s.trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t i = 0; i < s.batch; ++i) {
    if (dtype == DType::f32) {
      cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha),
                  static_cast<const float*>(a) + i * s.stride_a, lda,
                  static_cast<const float*>(b) + i * s.stride_b, ldb, static_cast<float>(beta),
                  static_cast<float*>(c) + i * s.stride_c, n);
    } else {
      cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha,
                  static_cast<const double*>(a) + i * s.stride_a, lda,
                  static_cast<const double*>(b) + i * s.stride_b, ldb, beta,
                  static_cast<double*>(c) + i * s.stride_c, n);
    }
  }
}

}  // namespace kiln::kernels
