#include "kernels/gemm.h"

#include <array>
#include <string>
#include <vector>

#include "core/autocast.h"
#include "core/profiler.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

namespace {

// The autocast product on the CPU: A and B rounded to bf16 values (kept as f32) in per-thread
// scratch, then the ordinary f32 GEMM.
void gemm_cpu_bf16_inputs(const GemmShape& s, double alpha, const float* a, const float* b,
                          double beta, float* c) {
  thread_local std::vector<float> rounded_a, rounded_b;
  auto round = [](const float* x, int64_t n, std::vector<float>& out) {
    out.resize(static_cast<size_t>(n));
    parallel_for_cpu(n, RoundToBf16<float>{x, out.data()});
  };
  round(a, gemm_operand_span(s.batch, s.stride_a, s.m, s.k), rounded_a);
  round(b, gemm_operand_span(s.batch, s.stride_b, s.k, s.n), rounded_b);
  gemm_cpu(DType::f32, s, alpha, rounded_a.data(), rounded_b.data(), beta, c);
}

// The profiler's name for a CPU product, "gemm (<library>)" (a small product libxsmm's JIT
// declines still says libxsmm; OpenBLAS runs it). Built once: the profiler keeps the pointer.
const char* cpu_gemm_span_name(DType dtype, const GemmShape& shape) {
  static const std::array<std::string, 3> names = [] {
    std::array<std::string, 3> out;
    for (CpuGemmLibrary library :
         {CpuGemmLibrary::libxsmm, CpuGemmLibrary::openblas, CpuGemmLibrary::onednn}) {
      out[static_cast<size_t>(library)] =
          std::string("gemm (") + cpu_gemm_library_name(library) + ")";
    }
    return out;
  }();
  return names[static_cast<size_t>(cpu_gemm_library(dtype, shape))].c_str();
}

}  // namespace

void gemm(Device device, DType dtype, const GemmShape& shape, double alpha, const void* a,
          const void* b, double beta, void* c) {
  KILN_CHECK(dtype == DType::f32 || dtype == DType::f64, "matmul: dtype ", dtype_name(dtype),
             " is not supported (expected f32 or f64)");
  if (shape.m == 0 || shape.n == 0 || shape.batch == 0) return;
  const bool bf16_inputs = dtype == DType::f32 && Autocast::gemm_inputs() == DType::bf16;
  if (bf16_inputs) {
    profiler::ProfileScope scope(device.is_cpu() ? "gemm bf16 inputs (CPU, rounded copies)"
                                                 : "gemm bf16 inputs launch (cuBLAS)",
                                 profiler::Category::gemm);
    scope.add_flops(2.0 * shape.batch * shape.m * shape.n * shape.k);
    auto* fa = static_cast<const float*>(a);
    auto* fb = static_cast<const float*>(b);
    if (device.is_cpu()) {
      gemm_cpu_bf16_inputs(shape, alpha, fa, fb, beta, static_cast<float*>(c));
    } else {
      gemm_cuda_bf16_inputs(device.index, shape, alpha, fa, fb, beta, static_cast<float*>(c));
    }
    return;
  }
  profiler::ProfileScope scope(device.is_cpu() ? cpu_gemm_span_name(dtype, shape)
                                               : "gemm launch (cuBLAS)",
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
void load_cublas() { KILN_FAIL("cuBLAS: this build of kiln has no CUDA support"); }
void gemm_cuda(int device, DType, const GemmShape&, double, const void*, const void*, double,
               void*) {
  KILN_FAIL("matmul on cuda:", device, ": this build of kiln has no CUDA support");
}
void gemm_cuda_bf16_inputs(int device, const GemmShape&, double, const float*, const float*, double,
                           float*) {
  KILN_FAIL("matmul on cuda:", device, ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
