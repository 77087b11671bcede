// cuBLAS behind kernels::gemm. cuBLAS is column-major: a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the operands are passed swapped. Default math mode:
// full fp32 (no TF32), so results compare with the CPU at fp32 rounding.
//
// cuBLAS is opened on the first product on a GPU, not linked: loading libcublas and libcublasLt
// (0.75 GB) registers their kernels, 0.3-0.4 s that every process of a CUDA build paid at start,
// each `kiln` command and each test, with or without a GPU and whether or not it multiplies there.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda_check.h"
#include "core/cuda_runtime.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"
#include "kernels/parallel_for.h"

#define KILN_CUBLAS_CHECK(expr)                                                                  \
  do {                                                                                           \
    cublasStatus_t kiln_status_ = (expr);                                                        \
    if (kiln_status_ != CUBLAS_STATUS_SUCCESS)                                                   \
      KILN_FAIL("cuBLAS error ", cublas().status_name(kiln_status_), " in ", #expr, " at ",      \
                __FILE__, ":", __LINE__);                                                        \
  } while (0)

namespace kiln::kernels {

namespace {

// The cuBLAS entry points kiln calls, resolved from the library on first use. The mixed-precision
// product's pointer is spelled out: the header overloads its name with an inline wrapper.
struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetWorkspace_v2) set_workspace;
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasSgemmStridedBatched) sgemm;
  decltype(&cublasDgemmStridedBatched) dgemm;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, long long, const void*,
                            cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                            long long, int, cublasComputeType_t, cublasGemmAlgo_t);
};

// KILN_CUBLAS_SONAME (libcublas.so.<CUDA major>) through the loader's search path, else the
// library this build was configured with (KILN_CUBLAS_PATH).
const CublasApi& cublas() {
  static const CublasApi api = [] {
    void* library = nullptr;
    std::string errors;
    for (const char* name : {KILN_CUBLAS_SONAME, KILN_CUBLAS_PATH}) {
      library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (library) break;
      const char* error = dlerror();
      errors += std::string("\n  ") + (error ? error : name);
    }
    KILN_CHECK(library, "matmul on CUDA: cannot load cuBLAS:", errors);
    auto symbol = [&](auto& function, const char* name) {
      function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(dlsym(library, name));
      KILN_CHECK(function, "matmul on CUDA: cuBLAS has no ", name);
    };
    CublasApi a;
    symbol(a.create, "cublasCreate_v2");
    symbol(a.set_math_mode, "cublasSetMathMode");
    symbol(a.set_stream, "cublasSetStream_v2");
    symbol(a.set_workspace, "cublasSetWorkspace_v2");
    symbol(a.status_name, "cublasGetStatusName");
    symbol(a.sgemm, "cublasSgemmStridedBatched");
    symbol(a.dgemm, "cublasDgemmStridedBatched");
    symbol(a.gemm_ex, "cublasGemmStridedBatchedEx");
    return a;
  }();
  return api;
}

// A workspace of kiln's own per device: left to itself cuBLAS allocates workspace per stream,
// which a CUDA graph capture cannot record. 32 MiB is what NVIDIA recommends for Hopper.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct CublasDevice {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
};

const CublasDevice& cublas_device(int device) {
  static std::mutex mutex;
  static std::vector<CublasDevice> handles;
  std::lock_guard<std::mutex> lock(mutex);
  if (handles.empty()) handles.resize(cuda::device_count());
  KILN_CHECK(device >= 0 && device < static_cast<int>(handles.size()),
             "matmul: no device cuda:", device);
  CublasDevice& d = handles[device];
  if (!d.handle) {
    cuda::check_not_capturing("creating the cuBLAS handle");
    cuda::set_device(device);
    KILN_CUBLAS_CHECK(cublas().create(&d.handle));
    KILN_CUBLAS_CHECK(cublas().set_math_mode(d.handle, CUBLAS_DEFAULT_MATH));
    KILN_CUDA_CHECK(cudaMalloc(&d.workspace, kWorkspaceBytes));
  }
  return d;
}

// The device's handle, its work going to kiln's current stream (core/cuda_runtime.h). Setting the
// stream resets cuBLAS's workspace to its default, so the workspace is set after it.
cublasHandle_t stream_handle(int device) {
  const CublasDevice& d = cublas_device(device);
  KILN_CUBLAS_CHECK(cublas().set_stream(d.handle, cuda::current_stream()));
  KILN_CUBLAS_CHECK(cublas().set_workspace(d.handle, d.workspace, kWorkspaceBytes));
  return d.handle;
}

// A row-major GemmShape in cuBLAS's column-major terms (operands swapped, see the top), shared by
// every product below.
struct CublasGemm {
  cublasHandle_t handle;
  int m, n, k, lda, ldb, batch;
  cublasOperation_t op_a, op_b;
  CublasGemm(int device, const GemmShape& s)
      : handle(stream_handle(device)),
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

void load_cublas() { cublas(); }

void gemm_cuda(int device, DType dtype, const GemmShape& s, double alpha, const void* a,
               const void* b, double beta, void* c) {
  const CublasGemm g(device, s);
  if (dtype == DType::f32) {
    float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
    KILN_CUBLAS_CHECK(cublas().sgemm(
        g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &alpha_f, static_cast<const float*>(b), g.ldb,
        s.stride_b, static_cast<const float*>(a), g.lda, s.stride_a, &beta_f,
        static_cast<float*>(c), g.n, s.stride_c, g.batch));
  } else {
    KILN_CUBLAS_CHECK(cublas().dgemm(
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
  KILN_CUBLAS_CHECK(cublas().gemm_ex(
      g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &alpha_f, b16.raw_data(), CUDA_R_16BF, g.ldb,
      s.stride_b, a16.raw_data(), CUDA_R_16BF, g.lda, s.stride_a, &beta_f, c, CUDA_R_32F, g.n,
      s.stride_c, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kiln::kernels
