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
template <class T> const T* gate_ptr(const Tensor& gate) {  // or any optional device scalar
  return gate.defined() ? gate.data<T>() : nullptr;
}
DType dtype_of_lists(const TensorLists& lists) {
  return lists[0].empty() ? DType::f32 : lists[0][0].dtype();
}
}  // namespace

void step_gate(const Tensor& grad_scale, const Tensor& applied, const Tensor& gate, double beta1,
               double beta2) {
  KILN_DISPATCH_FLOAT(gate.dtype(), "step_gate", [&] {
    using T = scalar_t;
    // One element: a single thread on either device.
    parallel_for(gate.device(), 1,
                 StepGate<T>{scale_ptr<T>(grad_scale), applied.data<int64_t>(), gate.data<T>(),
                             beta1, beta2});
  });
}

void step_meter_add(const Tensor& loss, const Tensor& norm, const Tensor& gate, double tokens,
                    const Tensor& totals) {
  KILN_DISPATCH_FLOAT(loss.dtype(), "step_meter_add", [&] {
    using T = scalar_t;
    parallel_for(totals.device(), 1,
                 StepMeterAdd<T>{loss.data<T>(), gate_ptr<T>(norm), gate_ptr<T>(gate), tokens,
                                 totals.data<double>()});
  });
}

void sgd_step(MultiTensorPlan& plan, const TensorLists& lists, const SgdArgs& a, const Tensor& lr,
              const Tensor& grad_scale, const Tensor& gate) {
  plan.prepare(lists, "SGD");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "SGD", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(plan, lists,
                          SgdUpdate<T>{T(a.momentum), T(a.dampening), T(a.weight_decay), a.nesterov,
                                       lr.data<T>(), scale_ptr<T>(grad_scale), gate_ptr<T>(gate)});
  });
}

void adam_step(MultiTensorPlan& plan, const TensorLists& lists, const AdamArgs& a, const Tensor& lr,
               const Tensor& grad_scale, const Tensor& gate) {
  plan.prepare(lists, a.decoupled ? "AdamW" : "Adam");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "Adam", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(
        plan, lists,
        AdamUpdate<T>{T(a.beta1), T(a.beta2), T(a.eps), T(a.weight_decay), a.decoupled,
                      lr.data<T>(), scale_ptr<T>(grad_scale), gate_ptr<T>(gate)});
  });
}

void rmsprop_step(MultiTensorPlan& plan, const TensorLists& lists, const RmspropArgs& a,
                  const Tensor& lr, const Tensor& grad_scale, const Tensor& gate) {
  plan.prepare(lists, "RMSprop");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "RMSprop", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(
        plan, lists,
        RmspropUpdate<T>{T(a.alpha), T(a.eps), T(a.weight_decay), T(a.momentum), lr.data<T>(),
                         scale_ptr<T>(grad_scale), gate_ptr<T>(gate)});
  });
}

void ema_update(MultiTensorPlan& plan, const TensorLists& lists, double decay, const Tensor& gate) {
  plan.prepare(lists, "ExponentialMovingAverage");
  KILN_DISPATCH_FLOAT(dtype_of_lists(lists), "ExponentialMovingAverage", [&] {
    using T = scalar_t;
    multi_tensor_apply<T>(plan, lists, EmaUpdate<T>{T(decay), gate_ptr<T>(gate)});
  });
}

}  // namespace kiln::kernels
