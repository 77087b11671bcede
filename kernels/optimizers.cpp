// Launchers of the optimizer functors through multi_tensor_apply (compiled by nvcc when CUDA is
// on).
#include "kernels/optimizers.h"

#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/multi_tensor.h"

namespace kiln::kernels {

namespace {
template <class T> const T* scale_ptr(const Tensor& grad_scale) {
  return grad_scale.defined() ? grad_scale.data<T>() : nullptr;
}
DType dtype_of_lists(const TensorLists& lists) {
  return lists[0].empty() ? DType::f32 : lists[0][0].dtype();
}
}  // namespace

void sgd_step(MultiTensorPlan& plan, const TensorLists& lists, const SgdArgs& a,
              const Tensor& grad_scale) {
  plan.prepare(lists, "SGD");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "SGD", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(plan, lists,
                          SgdUpdate<T>{T(a.lr), T(a.momentum), T(a.dampening), T(a.weight_decay),
                                       a.nesterov, a.first_step, scale_ptr<T>(grad_scale)});
  });
}

void adam_step(MultiTensorPlan& plan, const TensorLists& lists, const AdamArgs& a,
               const Tensor& grad_scale) {
  plan.prepare(lists, a.decoupled ? "AdamW" : "Adam");
  double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.step));
  double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.step));
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "Adam", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(
        plan, lists,
        AdamUpdate<T>{T(a.lr), T(a.beta1), T(a.beta2), T(a.eps), T(a.weight_decay), T(bc1),
                      T(std::sqrt(bc2)), a.decoupled, scale_ptr<T>(grad_scale)});
  });
}

void rmsprop_step(MultiTensorPlan& plan, const TensorLists& lists, const RmspropArgs& a,
                  const Tensor& grad_scale) {
  plan.prepare(lists, "RMSprop");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "RMSprop", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(plan, lists,
                          RmspropUpdate<T>{T(a.lr), T(a.alpha), T(a.eps), T(a.weight_decay),
                                           T(a.momentum), scale_ptr<T>(grad_scale)});
  });
}

void ema_update(MultiTensorPlan& plan, const TensorLists& lists, double decay) {
  plan.prepare(lists, "ExponentialMovingAverage");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "ExponentialMovingAverage", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(plan, lists, EmaUpdate<T>{T(decay)});
  });
}

}  // namespace kiln::kernels
