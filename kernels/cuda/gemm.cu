// cuBLAS behind kernels::gemm. cuBLAS is column-major: a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the operands are passed swapped. Default math mode:
// full fp32 (no TF32), so results compare with the CPU at fp32 rounding.
#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "core/cuda_check.h"
#include "core/cuda_runtime.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"

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
}  // namespace

void gemm_cuda(int device, DType dtype, const GemmShape& s, double alpha, const void* a,
               const void* b, double beta, void* c) {
  cublasHandle_t handle = cublas_handle(device);
  int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  cublasOperation_t op_a = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                    op_b = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  int batch = static_cast<int>(s.batch);
  if (dtype == DType::f32) {
    float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
    KILN_CUBLAS_CHECK(cublasSgemmStridedBatched(
        handle, op_b, op_a, n, m, k, &alpha_f, static_cast<const float*>(b), ldb, s.stride_b,
        static_cast<const float*>(a), lda, s.stride_a, &beta_f, static_cast<float*>(c), n,
        s.stride_c, batch));
  } else {
    KILN_CUBLAS_CHECK(cublasDgemmStridedBatched(
        handle, op_b, op_a, n, m, k, &alpha, static_cast<const double*>(b), ldb, s.stride_b,
        static_cast<const double*>(a), lda, s.stride_a, &beta, static_cast<double*>(c), n,
        s.stride_c, batch));
  }
}

namespace {
__global__ void round_to_bf16_kernel(const float* x, bf16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = bf16(x[i]);
  }
}

// x (f32, n elements) into bf16 scratch from the caching allocator.
Tensor rounded_to_bf16(int device, const float* x, int64_t n) {
  Tensor y = empty({n}, {DType::bf16, Device::cuda(device)});
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65535));
  round_to_bf16_kernel<<<blocks, 256>>>(x, y.data<bf16>(), n);
  KILN_CUDA_CHECK(cudaGetLastError());
  return y;
}
}  // namespace

void gemm_cuda_bf16_inputs(int device, const GemmShape& s, double alpha, const float* a,
                           const float* b, double beta, float* c) {
  cublasHandle_t handle = cublas_handle(device);
  int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
  int lda = s.trans_a ? m : k, ldb = s.trans_b ? k : n;
  cublasOperation_t op_a = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                    op_b = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  Tensor a16 = rounded_to_bf16(device, a, gemm_operand_span(s.batch, s.stride_a, s.m, s.k));
  Tensor b16 = rounded_to_bf16(device, b, gemm_operand_span(s.batch, s.stride_b, s.k, s.n));
  float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  KILN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      handle, op_b, op_a, n, m, k, &alpha_f, b16.raw_data(), CUDA_R_16BF, ldb, s.stride_b,
      a16.raw_data(), CUDA_R_16BF, lda, s.stride_a, &beta_f, c, CUDA_R_32F, n, s.stride_c,
      static_cast<int>(s.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kiln::kernels
