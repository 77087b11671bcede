// Matrix products through the vendor libraries: OpenBLAS, oneDNN and libxsmm on the CPU (by size,
// below), cuBLAS on CUDA (fp32/fp64, no TF32). Inside an AutocastScope(DType::bf16) (core/autocast.h) an f32 product takes its inputs
// rounded to bf16 and accumulates in f32: on CUDA, cuBLAS's bf16 GEMM with f32 compute on bf16
// copies of A and B; on the CPU (Debian's OpenBLAS is built without sbgemm) the f32 GEMM of
// bf16-rounded copies, the same numbers up to summation order, since the product of two bf16
// values is exact in f32. The copies cost a read and a write of A and B per product.
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],   row-major, b < batch
//   op(A): [M, K] (A stored [K, M] when trans_a), op(B): [K, N] (B stored [N, K] when trans_b)
// Batch strides are in elements; a stride of 0 reuses one matrix for every batch entry.
// FLOPs: 2 * batch * M * N * K; C is written with = when beta == 0, accumulated otherwise.
#pragma once

#include "core/bfloat16.h"
#include "core/host_device.h"
#include "core/tensor.h"

namespace kiln::kernels {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// c = op(a) op(b) + beta * c for 2-D tensors (row views of larger tensors are fine).
void gemm_2d(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double beta,
             const Tensor& c);

void gemm(const GemmShape& shape, double alpha, const Tensor& a, const Tensor& b, double beta,
          const Tensor& c);
// The same on raw pointers of `dtype` elements on `device`: for loops that launch one GEMM per
// time step, where building tensor views would cost more host time than the GEMM itself.
void gemm(Device device, DType dtype, const GemmShape& shape, double alpha, const void* a,
          const void* b, double beta, void* c);
void gemm_cpu(DType dtype, const GemmShape& shape, double alpha, const void* a, const void* b,
              double beta, void* c);
// Which library a CPU product goes to, by its multiply-adds (M * N * K), each library only when
// kiln is built with it (kernels/cpu/gemm.cpp):
//   f32, at most kSmallGemmVolume and no transposed B   libxsmm's JIT kernels (one thread)
//   every other f32 product                             oneDNN's JIT sgemm: one thread up to
//                                                       kSingleThreadGemmVolume, else kiln's
//   every f64 product                                   OpenBLAS (kiln's threads)
// Measured here (bench/RESULTS.md, "Every f32 product through oneDNN"): on this AVX-512 host
// Debian's OpenBLAS runs sgemm at 70-110 GFLOP/s from 64 x 32 x 96 up to 640 x 200 x 32, oneDNN at
// 150-290, and a small GRU training step went from 3.78 to 3.00 ms. Two threads cost oneDNN more
// than they give up to about 1M multiply-adds alone (64 x 200 x 32: 5.7 us on one, 15.9 on two).
// Above that they pay when the second thread has work between products: from 2026-12-03 06:41 to
// 12:30 the edge was 2^23, because a woken worker spinning on after each product slowed the serial
// RNN loops between them; since the RNN loops run their batch as blocks, one per thread
// (kernels/rnn_steps.h), the small model's 2-5M products are threaded again (small GRU step
// 2.10 -> 1.63 ms on a Zen 4 host, whose cores do about 100 GFLOP/s each; bench/RESULTS.md).
constexpr int64_t kSmallGemmVolume = 64 * 64 * 64;
constexpr int64_t kSingleThreadGemmVolume = int64_t{1} << 20;
enum class CpuGemmLibrary { libxsmm, openblas, onednn };
// Products may use every library built in (automatic), or OpenBLAS only: the A/B of the others,
// and a way out on a host where they lose. Default: KILN_CPU_GEMM=auto|openblas, else automatic;
// a bad value is a kiln::Error naming the variable, at the first product.
enum class CpuGemmPolicy { automatic, openblas_only };
void set_cpu_gemm_policy(CpuGemmPolicy policy);
CpuGemmPolicy cpu_gemm_policy();
// KILN_CPU_GEMM's text: "auto" or "" (automatic), "openblas"; else a kiln::Error naming it.
CpuGemmPolicy parse_cpu_gemm_policy(const std::string& text);
// The library gemm_cpu picks for this product under the current policy.
CpuGemmLibrary cpu_gemm_library(DType dtype, const GemmShape& shape);
const char* cpu_gemm_library_name(CpuGemmLibrary library);  // "libxsmm", "OpenBLAS", "oneDNN"
// The threads gemm_cpu gives this product: 1 for libxsmm and for oneDNN's small products (above),
// else the thread policy's count (kernels/threads.h).
int cpu_gemm_threads(DType dtype, const GemmShape& shape);
bool built_with_onednn();
bool built_with_libxsmm();
void gemm_cuda(int device, DType dtype, const GemmShape& shape, double alpha, const void* a,
               const void* b, double beta, void* c);
// cuBLAS is opened at the first product on a GPU (kernels/cuda/gemm.cu); this opens it and
// resolves its entry points now, and throws naming what failed. No GPU is needed.
void load_cublas();
// The autocast product on CUDA: f32 A and B rounded into bf16 scratch, cublasGemmEx, f32 C.
void gemm_cuda_bf16_inputs(int device, const GemmShape& shape, double alpha, const float* a,
                           const float* b, double beta, float* c);
// The autocast products' input rounding, one functor for both devices: element i of an f32
// operand to the nearest bf16, stored as Out (bf16 scratch for cuBLAS, f32 for OpenBLAS).
template <class Out> struct RoundToBf16 {
  const float* x;
  Out* y;
  KILN_HD void operator()(int64_t i) const { y[i] = static_cast<Out>(bf16(x[i])); }
};
// Elements a batched operand spans: (batch - 1) * stride + rows * cols.
inline int64_t gemm_operand_span(int64_t batch, int64_t stride, int64_t rows, int64_t cols) {
  return (batch - 1) * stride + rows * cols;
}

}  // namespace kiln::kernels
