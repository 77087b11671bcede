// CUDA forward and backward of kernels/cross_entropy.h, one block per row. Each thread folds a
// strided slice of the row into an OnlineLogSumExp and a partial sum, block_reduce merges them in
// a fixed tree (deterministic; both from kernels/row_math.h), thread 0 writes the row's loss, lse
// and valid flag. Bytes: forward reads N*V logits once; backward reads them once and writes N*V.
#include "core/cuda_runtime.h"
#include "core/cuda_check.h"
#include "kernels/cross_entropy.h"
#include "kernels/dispatch.h"

namespace kiln::kernels {

namespace {

constexpr int kThreads = 256;

// One thread's share of a row: its log-sum-exp state and its sum of raw logits.
template <class T> struct RowPartial {
  OnlineLogSumExp<T> lse;
  T row_sum;
};

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* targets, const T* mask,
                                             T* loss_rows, T* lse_out, T* valid, int64_t classes,
                                             int64_t ignore_index, T eps) {
  int64_t n = blockIdx.x;
  int64_t t = targets[n];
  if (!cross_entropy_keeps_row(t, ignore_index, mask, n)) {
    if (threadIdx.x == 0) {
      loss_rows[n] = T(0);
      lse_out[n] = T(0);
      valid[n] = T(0);
    }
    return;
  }
  const T* row = logits + n * classes;
  RowPartial<T> mine{{-INFINITY, T(0)}, T(0)};
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
    T x = row[c];
    mine.lse.add(x);
    mine.row_sum += x;
  }
  __shared__ RowPartial<T> shared[kThreads];
  RowPartial<T> total =
      block_reduce<kThreads>(mine, shared, [](RowPartial<T> a, const RowPartial<T>& b) {
        a.lse.merge(b.lse);
        a.row_sum += b.row_sum;
        return a;
      });
  if (threadIdx.x == 0) {
    T lse = total.lse.value();
    loss_rows[n] = cross_entropy_row_loss(lse, row[t], total.row_sum, eps, classes);
    lse_out[n] = lse;
    valid[n] = T(1);
  }
}

// Backward, a block per row: the row's scale, lse and target are read once into registers, then
// the threads stride over the columns (coalesced), each element one exp and one write. (A
// persistent grid looping over rows measured slower: 0.708 vs 0.646 ms fwd+bwd at 3200 x 32000.)
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* targets, const T* lse,
                                              const T* valid, const T* grad_rows, const T* divisor,
                                              T* grad_logits, int64_t classes, T eps) {
  int64_t n = blockIdx.x;
  const T* row = logits + n * classes;
  T* out = grad_logits + n * classes;
  if (valid[n] == T(0)) {
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) out[c] = T(0);
    return;
  }
  T scale = cross_entropy_row_scale(grad_rows, divisor, n);
  T row_lse = lse[n];
  int64_t target = targets[n];
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
    out[c] = cross_entropy_grad(row[c], row_lse, c == target, eps, classes, scale);
  }
}

}  // namespace

void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                 const Tensor& valid, const CrossEntropyArgs& args,
                                 const Tensor& grad_rows, const Tensor& divisor,
                                 const Tensor& grad_logits) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  if (rows == 0) return;
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    using T = scalar_t;
    cross_entropy_backward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, cuda::current_stream()>>>(
        logits.data<T>(), targets.data<int64_t>(), lse.data<T>(), valid.data<T>(),
        grad_rows.data<T>(), divisor.defined() ? divisor.data<T>() : nullptr, grad_logits.data<T>(),
        classes, T(args.label_smoothing));
    KILN_CUDA_CHECK(cudaGetLastError());
  });
}

void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                                const CrossEntropyArgs& args, const Tensor& loss_rows,
                                const Tensor& lse, const Tensor& valid) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  if (rows == 0) return;
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    cross_entropy_forward_kernel<scalar_t><<<static_cast<unsigned>(rows), kThreads, 0, cuda::current_stream()>>>(
        logits.data<scalar_t>(), targets.data<int64_t>(),
        mask.defined() ? mask.data<scalar_t>() : nullptr, loss_rows.data<scalar_t>(),
        lse.data<scalar_t>(), valid.data<scalar_t>(), classes, args.ignore_index,
        scalar_t(args.label_smoothing));
    KILN_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kiln::kernels
