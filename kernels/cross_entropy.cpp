// CPU forward and backward of kernels/cross_entropy.h; the CUDA versions map a row to a block
// (kernels/cuda/cross_entropy.cu) around the same row math (cross_entropy_row_loss/_grad).
#include "kernels/cross_entropy.h"

#include "kernels/dispatch.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

namespace {

template <class T> struct CrossEntropyRowForward {
  const T* logits;
  const int64_t* targets;
  const T* mask;  // null: no mask
  T* loss_rows;
  T* lse_out;
  T* valid;
  int64_t classes, ignore_index;
  T eps;
  KILN_HD void operator()(int64_t n) const {
    int64_t t = targets[n];
    bool keep = t != ignore_index && (!mask || mask[n] != T(0));
    if (!keep) {
      loss_rows[n] = T(0);
      lse_out[n] = T(0);
      valid[n] = T(0);
      return;
    }
    const T* row = logits + n * classes;
    OnlineLogSumExp<T> acc{row[0], T(0)};
    T row_sum = T(0);
    for (int64_t c = 0; c < classes; ++c) {
      acc.add(row[c]);
      row_sum += row[c];
    }
    T lse = acc.value();
    loss_rows[n] = cross_entropy_row_loss(lse, row[t], row_sum, eps, classes);
    lse_out[n] = lse;
    valid[n] = T(1);
  }
};

template <class T> struct CrossEntropyBackwardFunctor {
  const T* logits;
  const int64_t* targets;
  const T* lse;
  const T* valid;
  const T* grad_rows;
  const T* divisor;  // null for reduction none
  T* grad_logits;
  int64_t classes;
  T eps;
  KILN_HD void operator()(int64_t n, int64_t c) const {
    int64_t i = n * classes + c;
    if (valid[n] == T(0)) {
      grad_logits[i] = T(0);
      return;
    }
    T scale = divisor ? grad_rows[0] / math::max(divisor[0], T(1)) : grad_rows[n];
    grad_logits[i] = cross_entropy_grad(logits[i], lse[n], c == targets[n], eps, classes, scale);
  }
};

template <class T> struct DivideByCount {
  const T* total;
  const T* count;
  T* out;
  KILN_HD void operator()(int64_t) const { out[0] = total[0] / math::max(count[0], T(1)); }
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
    parallel_for_cpu(rows,
                     CrossEntropyRowForward<scalar_t>{logits.data<scalar_t>(), targets.data<int64_t>(),
                                                      mask.defined() ? mask.data<scalar_t>() : nullptr,
                                                      loss_rows.data<scalar_t>(), lse.data<scalar_t>(),
                                                      valid.data<scalar_t>(), classes, args.ignore_index,
                                                      scalar_t(args.label_smoothing)},
                     /*grain=*/16);
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& valid,
                            const CrossEntropyArgs& args, const Tensor& grad_rows, const Tensor& divisor,
                            const Tensor& grad_logits) {
  if (logits.device().is_cuda()) {
    cross_entropy_backward_cuda(logits, targets, lse, valid, args, grad_rows, divisor, grad_logits);
    return;
  }
  int64_t classes = logits.size(1);
  KILN_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    parallel_for_2d(Device::cpu(), logits.size(0), classes,
                 CrossEntropyBackwardFunctor<scalar_t>{
                     logits.data<scalar_t>(), targets.data<int64_t>(), lse.data<scalar_t>(),
                     valid.data<scalar_t>(), grad_rows.data<scalar_t>(),
                     divisor.defined() ? divisor.data<scalar_t>() : nullptr, grad_logits.data<scalar_t>(),
                     classes, scalar_t(args.label_smoothing)});
  });
}

void divide_by_count(const Tensor& total, const Tensor& count, const Tensor& out) {
  KILN_DISPATCH_FLOAT(total.dtype(), "cross_entropy", [&] {
    parallel_for(total.device(), 1,
                 DivideByCount<scalar_t>{total.data<scalar_t>(), count.data<scalar_t>(), out.data<scalar_t>()});
  });
}

#ifndef KILN_WITH_CUDA
void cross_entropy_backward_cuda(const Tensor& logits, const Tensor&, const Tensor&, const Tensor&,
                                 const CrossEntropyArgs&, const Tensor&, const Tensor&, const Tensor&) {
  KILN_FAIL("cross_entropy on ", logits.device().str(), ": this build of kiln has no CUDA support");
}
void cross_entropy_forward_cuda(const Tensor& logits, const Tensor&, const Tensor&, const CrossEntropyArgs&,
                                const Tensor&, const Tensor&, const Tensor&) {
  KILN_FAIL("cross_entropy on ", logits.device().str(), ": this build of kiln has no CUDA support");
}
#endif

}  // namespace kiln::kernels
