// cross_entropy: the fused masked softmax-CE of kernels/cross_entropy.h as one autograd op. The
// forward saves only the per-row log-sum-exp (plus the logits it reads back); the reduction over
// real tokens is done on the device, so neither direction syncs with the host.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"
#include "kernels/cross_entropy.h"
#include "kernels/index.h"
#include "kernels/reduce.h"

namespace kiln {

using autograd::TensorList;

Tensor cross_entropy(const Tensor& logits, const Tensor& targets_in,
                     const CrossEntropyOptions& options, const Tensor& mask,
                     const Tensor& host_targets) {
  profiler::ProfileScope profile_scope("cross_entropy", profiler::Category::op);
  ops_detail::check_floating("cross_entropy", logits);
  ops_detail::check_defined("cross_entropy", targets_in, "targets");
  KILN_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, V], got ", logits.describe());
  KILN_CHECK(targets_in.shape() == Shape{logits.size(0)}, "cross_entropy: targets must be [N] = [",
             logits.size(0), "], got ", targets_in.describe());
  KILN_CHECK(targets_in.dtype() == DType::i64 || targets_in.dtype() == DType::i32,
             "cross_entropy: targets must be i64 or i32, got ", targets_in.describe());
  KILN_CHECK(targets_in.device() == logits.device(), "cross_entropy: device mismatch: logits ",
             logits.describe(), " vs targets ", targets_in.describe());
  KILN_CHECK(options.label_smoothing >= 0 && options.label_smoothing <= 1,
             "cross_entropy: label_smoothing must be in [0, 1], got ", options.label_smoothing);
  if (mask.defined()) {
    ops_detail::check_compatible("cross_entropy", logits, mask);
    KILN_CHECK(mask.shape() == Shape{logits.size(0)}, "cross_entropy: mask must be [N], got ",
               mask.describe());
  }
  Tensor targets = to(targets_in, DType::i64);
  {
    // A target outside [0, V) that is not the ignore index would read out of bounds.
    std::vector<int64_t> host = kernels::index_values(targets, host_targets, "cross_entropy");
    for (size_t n = 0; n < host.size(); ++n) {
      KILN_CHECK(host[n] == options.ignore_index || (host[n] >= 0 && host[n] < logits.size(1)),
                 "cross_entropy: target ", host[n], " at row ", n, " is out of range for ",
                 logits.size(1), " classes (and is not the ignore index ", options.ignore_index,
                 ")");
    }
  }
  kernels::CrossEntropyArgs args{options.ignore_index, options.label_smoothing};
  int64_t rows = logits.size(0);
  Options opt = logits.options();
  Tensor loss_rows = empty({rows}, opt), lse = empty({rows}, opt), valid = empty({rows}, opt);
  kernels::cross_entropy_forward(logits, targets, mask, args, loss_rows, lse, valid);

  Tensor out, divisor;
  switch (options.reduction) {
    case Reduction::none: out = loss_rows; break;
    case Reduction::sum:
      out = empty({}, opt);
      kernels::sum_all(loss_rows, 1.0, out);
      divisor = ones({}, opt);
      break;
    case Reduction::mean: {
      Tensor total = empty({}, opt);
      divisor = empty({}, opt);
      kernels::sum_all(loss_rows, 1.0, total);
      kernels::sum_all(valid, 1.0, divisor);
      out = empty({}, opt);
      kernels::divide_by_count(total, divisor, out);
      break;
    }
  }
  if (autograd::needs_grad({logits})) {
    autograd::record("cross_entropy", {logits}, {out},
                     [=, logits = logits.detach()](const TensorList& grads) {
                       Tensor grad_logits = empty(logits.shape(), logits.options());
                       kernels::cross_entropy_backward(logits, targets, lse, valid, args, grads[0],
                                                       divisor, grad_logits);
                       return TensorList{grad_logits};
                     });
  }
  return out;
}

}  // namespace kiln
