// CPU forward and backward of kernels/cross_entropy.h, one row at a time: the forward reads each
// row twice (max, then exponentials and the raw sum), the backward reads it once and writes it.
// The CUDA versions map a row to a block (kernels/cuda/cross_entropy.cu) around the same row math
// (kernels/row_math.h).
#include "kernels/cross_entropy.h"

#include "kernels/dispatch.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

namespace {

// The CPU kernels work a row at a time: OpenMP over rows, `omp simd` over a row's classes, with
// everything per row (target, lse, scale) read once. The max and the sums are SIMD reductions, so
// their order differs from a sequential loop by a few ulps (the CUDA kernel's order differs too).
// Rows of exponentials cost about 0.7 ns an element: from 2^15 elements (23 us) two threads pay for
// their fork/join. A small step's logits, 640 x 200, took 108 us on one thread, 52 on two; the
// default grain (kParallelGrain, sized for loops of a few cheap operations) kept them on one.
constexpr int64_t kCrossEntropyGrain = 32768;

template <class T>
void cross_entropy_forward_rows(const T* logits, const int64_t* targets, const T* mask,
                                T* loss_rows, T* lse_out, T* valid, int64_t rows, int64_t classes,
                                int64_t ignore_index, T eps) {
  const int threads = threads_for(rows * classes, kCrossEntropyGrain);
  profiler::ProfileScope scope("cross_entropy rows", profiler::Category::kernel, threads > 1);
  scope.add_items(rows);
  cpu_for(threads, rows, [&](int64_t n) {
    int64_t t = targets[n];
    if (!cross_entropy_keeps_row(t, ignore_index, mask, n)) {
      loss_rows[n] = lse_out[n] = valid[n] = T(0);
      return;
    }
    const T* row = logits + n * classes;
    T row_sum;
    T lse = row_log_sum_exp</*kRowSum=*/true>(row, classes, &row_sum).value();
    loss_rows[n] = cross_entropy_row_loss(lse, row[t], row_sum, eps, classes);
    lse_out[n] = lse;
    valid[n] = T(1);
  });
}

template <class T>
void cross_entropy_backward_rows(const T* logits, const int64_t* targets, const T* lse,
                                 const T* valid, const T* grad_rows, const T* divisor,
                                 T* grad_logits, int64_t rows, int64_t classes, T eps) {
  const int threads = threads_for(rows * classes, kCrossEntropyGrain);
  profiler::ProfileScope scope("cross_entropy backward rows", profiler::Category::kernel,
                               threads > 1);
  scope.add_items(rows);
  cpu_for(threads, rows, [&](int64_t n) {
    T* out = grad_logits + n * classes;
    if (valid[n] == T(0)) {
      for (int64_t c = 0; c < classes; ++c) out[c] = T(0);
      return;
    }
    const T* row = logits + n * classes;
    const T scale = cross_entropy_row_scale(grad_rows, divisor, n);
    const T row_lse = lse[n];
    const int64_t target = targets[n];
#pragma omp simd
    for (int64_t c = 0; c < classes; ++c)
      out[c] = cross_entropy_grad(row[c], row_lse, c == target, eps, classes, scale);
  });
}

template <class T> struct DivideByCount {
  const T* total;
  const T* count;
  T* out;
  KILN_HD void operator()(int64_t) const { out[0] = mean_over_count(total[0], count[0]); }
};

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& mask,
                           const CrossEntropyArgs& args, const Tensor& loss_rows, const Tensor& lse,
                           const Tensor& valid) {
  if (logits.device().is_cuda()) {
    cross_entropy_forward_cuda(logits, targets, mask, args, loss_rows, lse, valid);
    return;
  }
  int64_t rows = logits.size(0), classes = logits.size(1);
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    cross_entropy_forward_rows(logits.data<scalar_t>(), targets.data<int64_t>(),
                               mask.defined() ? mask.data<scalar_t>() : nullptr,
                               loss_rows.data<scalar_t>(), lse.data<scalar_t>(),
                               valid.data<scalar_t>(), rows, classes, args.ignore_index,
                               scalar_t(args.label_smoothing));
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            const Tensor& valid, const CrossEntropyArgs& args,
                            const Tensor& grad_rows, const Tensor& divisor,
                            const Tensor& grad_logits) {
  if (logits.device().is_cuda()) {
    cross_entropy_backward_cuda(logits, targets, lse, valid, args, grad_rows, divisor, grad_logits);
    return;
  }
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    cross_entropy_backward_rows(
        logits.data<scalar_t>(), targets.data<int64_t>(), lse.data<scalar_t>(),
        valid.data<scalar_t>(), grad_rows.data<scalar_t>(),
        divisor.defined() ? divisor.data<scalar_t>() : nullptr, grad_logits.data<scalar_t>(),
        logits.size(0), logits.size(1), scalar_t(args.label_smoothing));
  });
}

void divide_by_count(const Tensor& total, const Tensor& count, const Tensor& out) {
  KILN_DISPATCH_FLOAT(total.dtype(), "cross_entropy", [&] {
    parallel_for(total.device(), 1,
                 DivideByCount<scalar_t>{total.data<scalar_t>(), count.data<scalar_t>(),
                                         out.data<scalar_t>()});
  });
}

#ifndef KILN_WITH_CUDA
void cross_entropy_backward_cuda(const Tensor& logits, const Tensor&, const Tensor&, const Tensor&,
                                 const CrossEntropyArgs&, const Tensor&, const Tensor&,
                                 const Tensor&) {
  KILN_FAIL("cross_entropy on ", logits.device().str(), ": this build of kiln has no CUDA support");
}
void cross_entropy_forward_cuda(const Tensor& logits, const Tensor&, const Tensor&,
                                const CrossEntropyArgs&, const Tensor&, const Tensor&,
                                const Tensor&) {
  KILN_FAIL("cross_entropy on ", logits.device().str(), ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
