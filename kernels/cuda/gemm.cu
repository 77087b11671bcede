// cuBLAS behind kernels::gemm. cuBLAS is column-major: a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the operands are passed swapped. Default math mode:
// full fp32 (no TF32), so results compare with the CPU at fp32 rounding.
#include <cublas_v2.h>

#include <mutex>
#include <vector>

#include "core/cuda_check.h"
#include "core/cuda_runtime.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"
#include "kernels/parallel_for.h"

#define KILN_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                     \
    cublasStatus_t kiln_status_ = (expr);                                                  \
    if (kiln_status_ != CUBLAS_STATUS_SUCCESS)                                             \
      KILN_FAIL("cuBLAS error ", cublasGetStatusName(kiln_status_), " in ", #expr, " at ", \
                __FILE__, ":", __LINE__);                                                  \
  } while (0)

namespace kiln::kernels {

namespace {
cublasHandle_t cublas_handle(int device) {
  static std::mutex mutex;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mutex);
  if (handles.empty()) handles.resize(cuda::device_count(), nullptr);
  KILN_CHECK(device >= 0 && device < static_cast<int>(handles.size()),
             "matmul: no device cuda:", device);
  if (!handles[device]) {
    cuda::set_device(device);
    KILN_CUBLAS_CHECK(cublasCreate(&handles[device]));
    KILN_CUBLAS_CHECK(cublasSetMathMode(handles[device], CUBLAS_DEFAULT_MATH));
  }
  return handles[device];
}

// A row-major GemmShape in cuBLAS's column-major terms (operands swapped, see the top), shared by
// every product below.
struct CublasGemm {
  cublasHandle_t handle;
  int m, n, k, lda, ldb, batch;
  cublasOperation_t op_a, op_b;
  CublasGemm(int device, const GemmShape& s)
      : handle(cublas_handle(device)),
        m(static_cast<int>(s.m)),
        n(static_cast<int>(s.n)),
        k(static_cast<int>(s.k)),
        lda(s.trans_a ? m : k),
        ldb(s.trans_b ? k : n),
        batch(static_cast<int>(s.batch)),
        op_a(s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N),
        op_b(s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N) {}
};

// x (f32, n elements) rounded into bf16 scratch from the caching allocator.
Tensor rounded_to_bf16(int device, const float* x, int64_t n) {
  Tensor y = empty({n}, {DType::bf16, Device::cuda(device)});
  parallel_for(Device::cuda(device), n, RoundToBf16<bf16>{x, y.data<bf16>()});
  return y;
}
}  // namespace

void gemm_cuda(int device, DType dtype, const GemmShape& s, double alpha, const void* a,
               const void* b, double beta, void* c) {
  const CublasGemm g(device, s);
  if (dtype == DType::f32) {
    float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
    KILN_CUBLAS_CHECK(cublasSgemmStridedBatched(
        g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &alpha_f, static_cast<const float*>(b), g.ldb,
        s.stride_b, static_cast<const float*>(a), g.lda, s.stride_a, &beta_f,
        static_cast<float*>(c), g.n, s.stride_c, g.batch));
  } else {
    KILN_CUBLAS_CHECK(cublasDgemmStridedBatched(
        g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &alpha, static_cast<const double*>(b), g.ldb,
        s.stride_b, static_cast<const double*>(a), g.lda, s.stride_a, &beta,
        static_cast<double*>(c), g.n, s.stride_c, g.batch));
  }
}

void gemm_cuda_bf16_inputs(int device, const GemmShape& s, double alpha, const float* a,
                           const float* b, double beta, float* c) {
  const CublasGemm g(device, s);
  Tensor a16 = rounded_to_bf16(device, a, gemm_operand_span(s.batch, s.stride_a, s.m, s.k));
  Tensor b16 = rounded_to_bf16(device, b, gemm_operand_span(s.batch, s.stride_b, s.k, s.n));
  float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  KILN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &alpha_f, b16.raw_data(), CUDA_R_16BF, g.ldb,
      s.stride_b, a16.raw_data(), CUDA_R_16BF, g.lda, s.stride_a, &beta_f, c, CUDA_R_32F, g.n,
      s.stride_c, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kiln::kernels
