#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>
#ifdef KILN_WITH_LIBXSMM
#include <libxsmm.h>
#endif
#ifdef KILN_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#include <atomic>
#include <cstdlib>
#include <string>

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

#ifdef KILN_WITH_LIBXSMM
// Small f32 products (a small RNN's per-step recurrent GEMM, 64 x 96 x 32, is 0.4 MFLOP) through
// libxsmm's JIT kernels, 1.6-3x faster than OpenBLAS on those shapes here (bench/RESULTS.md, "Small
// GEMMs"). Up to kSmallGemmVolume multiply-adds (gemm.h). libxsmm is
// column-major: row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so it gets
// (m, n, k) = (N, M, K) on (B, A), and our trans_a is its transposed second operand. Its JIT has no
// transposed first operand (our trans_b): false, and OpenBLAS takes those (the RNN loops pass
// W_hh^T already transposed, kernels/rnn_steps.h).

bool small_gemm_libxsmm(const GemmShape& s, float alpha, const float* a, const float* b, float beta,
                        float* c) {
  static const bool initialised = (libxsmm_init(), true);
  (void)initialised;
  const int m = static_cast<int>(s.n), n = static_cast<int>(s.m), k = static_cast<int>(s.k);
  const int lda = m, ldb = s.trans_a ? n : k, ldc = m;
  const int flags = s.trans_a ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
  // Dispatch looks the kernel up in libxsmm's registry (JIT-compiled on a shape's first use).
  libxsmm_smmfunction kernel =
      libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, nullptr);
  if (!kernel) return false;
  for (int64_t i = 0; i < s.batch; ++i) {
    kernel(b + i * s.stride_b, a + i * s.stride_a, c + i * s.stride_c);
  }
  return true;
}
#endif

#ifdef KILN_WITH_ONEDNN
// f32 products through oneDNN's sgemm (row-major, like cblas with CblasRowMajor). Its OpenMP
// regions size their teams by omp_get_max_threads(), which use_blas_threads has set.
void gemm_onednn(const GemmShape& s, float alpha, const float* a, const float* b, float beta,
                 float* c) {
  const int64_t lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n;
  for (int64_t i = 0; i < s.batch; ++i) {
    dnnl_status_t status =
        dnnl_sgemm(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.m, s.n, s.k, alpha,
                   a + i * s.stride_a, lda, b + i * s.stride_b, ldb, beta, c + i * s.stride_c, s.n);
    KILN_CHECK(status == dnnl_success, "matmul: oneDNN's sgemm failed (status ", status, ") on ",
               s.m, " x ", s.n, " x ", s.k);
  }
}
#endif

// -1 until the policy is set or KILN_CPU_GEMM is read.
std::atomic<int> g_policy{-1};

}  // namespace

CpuGemmPolicy parse_cpu_gemm_policy(const std::string& text) {
  if (text.empty() || text == "auto") return CpuGemmPolicy::automatic;
  if (text == "openblas") return CpuGemmPolicy::openblas_only;
  KILN_FAIL("KILN_CPU_GEMM='", text, "': expected auto (libxsmm, OpenBLAS and oneDNN by size, ",
            "each when built in) or openblas (OpenBLAS for every CPU product)");
}

void set_cpu_gemm_policy(CpuGemmPolicy policy) {
  g_policy.store(static_cast<int>(policy), std::memory_order_relaxed);
}

CpuGemmPolicy cpu_gemm_policy() {
  int policy = g_policy.load(std::memory_order_relaxed);
  if (policy < 0) {
    const char* text = std::getenv("KILN_CPU_GEMM");
    policy = static_cast<int>(parse_cpu_gemm_policy(text ? text : ""));  // may throw: stays unset
    int unset = -1;  // a policy set meanwhile wins
    g_policy.compare_exchange_strong(unset, policy, std::memory_order_relaxed);
    policy = g_policy.load(std::memory_order_relaxed);
  }
  return static_cast<CpuGemmPolicy>(policy);
}

bool built_with_onednn() {
#ifdef KILN_WITH_ONEDNN
  return true;
#else
  return false;
#endif
}

bool built_with_libxsmm() {
#ifdef KILN_WITH_LIBXSMM
  return true;
#else
  return false;
#endif
}

CpuGemmLibrary cpu_gemm_library(DType dtype, const GemmShape& s) {
  if (dtype != DType::f32 || cpu_gemm_policy() == CpuGemmPolicy::openblas_only) {
    return CpuGemmLibrary::openblas;
  }
  const int64_t volume = s.m * s.n * s.k;
  if (built_with_libxsmm() && !s.trans_b && volume > 0 && volume <= kSmallGemmVolume) {
    return CpuGemmLibrary::libxsmm;
  }
  if (built_with_onednn() && volume > 0) return CpuGemmLibrary::onednn;
  return CpuGemmLibrary::openblas;
}

int cpu_gemm_threads(DType dtype, const GemmShape& s) {
  switch (cpu_gemm_library(dtype, s)) {
    case CpuGemmLibrary::libxsmm: return 1;
    case CpuGemmLibrary::onednn:
      return s.m * s.n * s.k <= kSingleThreadGemmVolume ? 1 : num_threads();
    case CpuGemmLibrary::openblas: break;
  }
  return num_threads();
}

const char* cpu_gemm_library_name(CpuGemmLibrary library) {
  switch (library) {
    case CpuGemmLibrary::libxsmm: return "libxsmm";
    case CpuGemmLibrary::onednn: return "oneDNN";
    case CpuGemmLibrary::openblas: break;
  }
  return "OpenBLAS";
}

void gemm_cpu(DType dtype, const GemmShape& s, double alpha, const void* a, const void* b,
              double beta, void* c) {
  int m = checked_int(s.m, "M"), n = checked_int(s.n, "N"), k = checked_int(s.k, "K");
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans,
                  tb = s.trans_b ? CblasTrans : CblasNoTrans;
  const CpuGemmLibrary library = cpu_gemm_library(dtype, s);
#ifdef KILN_WITH_LIBXSMM
  if (library == CpuGemmLibrary::libxsmm &&
      small_gemm_libxsmm(s, static_cast<float>(alpha), static_cast<const float*>(a),
                         static_cast<const float*>(b), static_cast<float>(beta),
                         static_cast<float*>(c))) {
    return;
  }
#endif
  // num_threads() first: on its first call the policy reads OpenMP's own count (OMP_NUM_THREADS),
  // which use_blas_threads then changes. Inside a parallel region (a block of an RNN's batch,
  // kernels/rnn_steps.h) the caller's thread is the product's only one.
  const int policy_threads = num_threads();
  const bool one_thread =
      omp_in_parallel() || (library == CpuGemmLibrary::onednn && cpu_gemm_threads(dtype, s) == 1);
  use_blas_threads(one_thread ? 1 : policy_threads);
#ifdef KILN_WITH_ONEDNN
  if (library == CpuGemmLibrary::onednn) {
    gemm_onednn(s, static_cast<float>(alpha), static_cast<const float*>(a),
                static_cast<const float*>(b), static_cast<float>(beta), static_cast<float*>(c));
    return;
  }
#endif
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
