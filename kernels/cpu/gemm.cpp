#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include "kernels/threads.h"

namespace kiln::kernels {

namespace {
// cblas takes int dimensions; refuse sizes it cannot express rather than truncate them.
int checked_int(int64_t value, const char* what) {
  KILN_CHECK(value >= 0 && value <= INT32_MAX, "matmul: ", what, " = ", value,
             " exceeds the BLAS int range");
  return static_cast<int>(value);
}
// OpenBLAS's threads follow kiln's policy (kernels/threads.h). Its OpenMP build sizes each GEMM's
// team by the calling thread's nthreads-var (omp_get_max_threads), which openblas_set_num_threads
// sets, so the check is per thread (the serve worker is not the main thread). OpenBLAS itself
// keeps GEMMs under 2*64^3 FLOPs on one thread.
void use_blas_threads(int threads) {
  if (omp_get_max_threads() == threads) return;
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);  // the pthread build does not touch the OpenMP count
}

}  // namespace

void gemm_cpu(DType dtype, const GemmShape& s, double alpha, const void* a, const void* b,
              double beta, void* c) {
  int m = checked_int(s.m, "M"), n = checked_int(s.n, "N"), k = checked_int(s.k, "K");
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans,
                  tb = s.trans_b ? CblasTrans : CblasNoTrans;
  use_blas_threads(num_threads());
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
