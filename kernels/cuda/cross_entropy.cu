// CUDA forward of kernels/cross_entropy.h: one block per row. Each thread folds a strided slice
// of the row into an OnlineLogSumExp and a partial sum, the block merges them in a fixed tree
// (deterministic), thread 0 writes the row's loss, lse and valid flag.
#include "core/cuda_check.h"
#include "kernels/cross_entropy.h"
#include "kernels/dispatch.h"

namespace kiln::kernels {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* targets, const T* mask, T* loss_rows,
                                             T* lse_out, T* valid, int64_t classes, int64_t ignore_index, T eps) {
  int64_t n = blockIdx.x;
  int64_t t = targets[n];
  bool keep = t != ignore_index && (!mask || mask[n] != T(0));
  if (!keep) {
    if (threadIdx.x == 0) {
      loss_rows[n] = T(0);
      lse_out[n] = T(0);
      valid[n] = T(0);
    }
    return;
  }
  const T* row = logits + n * classes;
  OnlineLogSumExp<T> acc{-INFINITY, T(0)};
  T row_sum = T(0);
  for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
    T x = row[c];
    acc.add(x);
    row_sum += x;
  }
  __shared__ T shared_max[kThreads], shared_sum[kThreads], shared_row[kThreads];
  shared_max[threadIdx.x] = acc.max;
  shared_sum[threadIdx.x] = acc.sum;
  shared_row[threadIdx.x] = row_sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      OnlineLogSumExp<T> mine{shared_max[threadIdx.x], shared_sum[threadIdx.x]};
      mine.merge({shared_max[threadIdx.x + stride], shared_sum[threadIdx.x + stride]});
      shared_max[threadIdx.x] = mine.max;
      shared_sum[threadIdx.x] = mine.sum;
      shared_row[threadIdx.x] += shared_row[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    OnlineLogSumExp<T> total{shared_max[0], shared_sum[0]};
    T lse = total.value();
    loss_rows[n] = cross_entropy_row_loss(lse, row[t], shared_row[0], eps, classes);
    lse_out[n] = lse;
    valid[n] = T(1);
  }
}

}  // namespace

void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                                const CrossEntropyArgs& args, const Tensor& loss_rows, const Tensor& lse,
                                const Tensor& valid) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  if (rows == 0) return;
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    cross_entropy_forward_kernel<scalar_t><<<static_cast<unsigned>(rows), kThreads>>>(
        logits.data<scalar_t>(), targets.data<int64_t>(), mask.defined() ? mask.data<scalar_t>() : nullptr,
        loss_rows.data<scalar_t>(), lse.data<scalar_t>(), valid.data<scalar_t>(), classes, args.ignore_index,
        scalar_t(args.label_smoothing));
    KILN_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kiln::kernels
