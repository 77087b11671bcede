#include "kernels/gemm.h"

#include "core/profiler.h"

namespace kiln::kernels {

void gemm(Device device, DType dtype, const GemmShape& shape, double alpha, const void* a,
          const void* b, double beta, void* c) {
  KILN_CHECK(is_floating(dtype), "matmul: dtype ", dtype_name(dtype),
             " is not supported (expected f32 or f64)");
  if (shape.m == 0 || shape.n == 0 || shape.batch == 0) return;
  profiler::ProfileScope scope(device.is_cpu() ? "gemm (OpenBLAS)" : "gemm launch (cuBLAS)",
                               profiler::Category::gemm);
  scope.add_flops(2.0 * shape.batch * shape.m * shape.n * shape.k);
  if (device.is_cpu()) {
    gemm_cpu(dtype, shape, alpha, a, b, beta, c);
  } else {
    gemm_cuda(device.index, dtype, shape, alpha, a, b, beta, c);
  }
}

void gemm(const GemmShape& shape, double alpha, const Tensor& a, const Tensor& b, double beta,
          const Tensor& c) {
  gemm(c.device(), c.dtype(), shape, alpha, a.raw_data(), b.raw_data(), beta, c.raw_data());
}

void gemm_2d(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double beta,
             const Tensor& c) {
  GemmShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.m = trans_a ? a.size(1) : a.size(0);
  s.k = trans_a ? a.size(0) : a.size(1);
  s.n = trans_b ? b.size(0) : b.size(1);
  KILN_CHECK((trans_b ? b.size(1) : b.size(0)) == s.k && c.size(0) == s.m && c.size(1) == s.n,
             "gemm_2d: shapes do not fit: ", a.describe(), " x ", b.describe(), " -> ",
             c.describe());
  gemm(s, 1.0, a, b, beta, c);
}

#ifndef KILN_WITH_CUDA
void gemm_cuda(int device, DType, const GemmShape&, double, const void*, const void*, double,
               void*) {
  KILN_FAIL("matmul on cuda:", device, ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
