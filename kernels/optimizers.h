// Fused optimizer updates: the whole update of one element in one functor, applied to every
// parameter in one multi-tensor launch (kernels/multi_tensor.h). Values that change each step
// (learning rate, bias corrections) are arguments; the gradient is multiplied by *grad_scale, a
// device scalar (a clip-norm factor, or null for 1), so no step reads anything back to the host.
// Bytes per element: SGD reads p, g, buf and writes p, buf (5 x sizeof(T)); Adam/AdamW read p, g,
// m, v and write p, m, v (7 x); RMSprop 5 x, or 7 x with momentum; the weight EMA reads avg, p and
// writes avg (3 x). Formulas follow torch.optim.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

// p -= lr * d, d = g + wd p; with momentum: buf = mu buf + (1 - dampening) d (buf = d on the
// first step), d = nesterov ? d + mu buf : buf.
template <class T> struct SgdUpdate {
  T lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
  const T* grad_scale;
  KILN_HD void operator()(T* const* ptr, int64_t i) const {  // ptr: p, g, buf
    T g = ptr[1][i] * (grad_scale ? *grad_scale : T(1)) + weight_decay * ptr[0][i];
    if (momentum != T(0)) {
      T buf = first_step ? g : momentum * ptr[2][i] + (T(1) - dampening) * g;
      ptr[2][i] = buf;
      g = nesterov ? g + momentum * buf : buf;
    }
    ptr[0][i] -= lr * g;
  }
};

// Adam (decoupled = false: L2 added to g) and AdamW (decoupled: p *= 1 - lr wd first).
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),  bc_k = 1 - b_k^step
template <class T> struct AdamUpdate {
  T lr, beta1, beta2, eps, weight_decay, bias_correction1, sqrt_bias_correction2;
  bool decoupled;
  const T* grad_scale;
  KILN_HD void operator()(T* const* ptr, int64_t i) const {  // ptr: p, g, m, v
    T p = ptr[0][i];
    T g = ptr[1][i] * (grad_scale ? *grad_scale : T(1));
    if (decoupled) {
      p *= T(1) - lr * weight_decay;
    } else {
      g += weight_decay * p;
    }
    T m = beta1 * ptr[2][i] + (T(1) - beta1) * g;
    T v = beta2 * ptr[3][i] + (T(1) - beta2) * g * g;
    ptr[2][i] = m;
    ptr[3][i] = v;
    ptr[0][i] = p - (lr / bias_correction1) * m / (math::sqrt(v) / sqrt_bias_correction2 + eps);
  }
};

// sq = a sq + (1 - a) g^2; without momentum p -= lr g / (sqrt(sq) + eps); with momentum
// buf = mu buf + g / (sqrt(sq) + eps), p -= lr buf.
template <class T> struct RmspropUpdate {
  T lr, alpha, eps, weight_decay, momentum;
  const T* grad_scale;
  KILN_HD void operator()(T* const* ptr,
                          int64_t i) const {  // ptr: p, g, sq, buf (buf only with momentum)
    T g = ptr[1][i] * (grad_scale ? *grad_scale : T(1)) + weight_decay * ptr[0][i];
    T sq = alpha * ptr[2][i] + (T(1) - alpha) * g * g;
    ptr[2][i] = sq;
    T step = g / (math::sqrt(sq) + eps);
    if (momentum != T(0)) {
      step += momentum * ptr[3][i];
      ptr[3][i] = step;
    }
    ptr[0][i] -= lr * step;
  }
};

// The exponential moving average of weights (nn/averaging.h): avg = decay avg + (1 - decay) p.
template <class T> struct EmaUpdate {
  T decay;
  KILN_HD void operator()(T* const* ptr, int64_t i) const {  // ptr: avg, p
    ptr[0][i] = decay * ptr[0][i] + (T(1) - decay) * ptr[1][i];
  }
};

struct SgdArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
};
struct AdamArgs {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  int64_t step;  // 1 on the first update
};
struct RmspropArgs {
  double lr, alpha, eps, weight_decay, momentum;
};

class MultiTensorPlan;
using TensorLists = std::vector<std::vector<Tensor>>;
// lists: {params, grads, state...} as each functor's ptr comment says. grad_scale: a device
// scalar in the params' dtype, or undefined for 1.
void sgd_step(MultiTensorPlan& plan, const TensorLists& lists, const SgdArgs& args,
              const Tensor& grad_scale);
void adam_step(MultiTensorPlan& plan, const TensorLists& lists, const AdamArgs& args,
               const Tensor& grad_scale);
void rmsprop_step(MultiTensorPlan& plan, const TensorLists& lists, const RmspropArgs& args,
                  const Tensor& grad_scale);
// lists: {averages, params}.
void ema_update(MultiTensorPlan& plan, const TensorLists& lists, double decay);

}  // namespace kiln::kernels
