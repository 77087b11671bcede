// Fused optimizer updates: the whole update of one element in one functor, applied to every
// parameter in one multi-tensor launch (kernels/multi_tensor.h). The learning rate is a device
// scalar (*lr: a schedule changes it between the steps of a replayed CUDA graph, which replays its
// kernels' arguments as captured); the gradient is multiplied by *grad_scale, a device scalar (a
// clip-norm factor, or null for 1).
// Device scalars (lr, the scale, the step gate's values) are read by scalars(), once per CUDA thread
// or CPU range, and reach each element by value: read through their pointers at every element,
// they kept GCC from vectorizing the CPU loop (Adam with a clip scale ran at 12 GB/s, 80 without).
// Whether the step is taken at all is decided on the device too (StepGate, below), so no step reads
// anything back to the host.
// Bytes per element: SGD reads p, g, buf and writes p, buf (5 x sizeof(T)); Adam/AdamW read p, g,
// m, v and write p, m, v (7 x); RMSprop 5 x, or 7 x with momentum; the weight EMA reads avg, p and
// writes avg (3 x). Formulas follow torch.optim.
#pragma once

#include "core/tensor.h"
#include "kernels/math.h"

namespace kiln::kernels {

// What one optimizer step decides before its update, on one device thread: a non-finite
// *grad_scale (the clip factor of a non-finite gradient norm) drops the step, with nothing read
// back to the host; otherwise the count of applied updates goes up, and the values that depend on
// it follow (torch.optim's capturable Adam keeps its step count on the device for the same
// reason). gate: [0] 1 if the step is taken else 0, [1] 1 if it is the first applied update,
// [2] Adam's bias correction 1 - beta1^t, [3] sqrt(1 - beta2^t), t the applied count.
template <class T> struct StepGate {
  const T* grad_scale;  // or null: always taken
  int64_t* applied;     // updates applied so far, kept on the device
  T* gate;
  double beta1, beta2;  // Adam's; other optimizers ignore [2] and [3]
  KILN_HD void operator()(int64_t) const {
    const bool taken = !grad_scale || math::is_finite(*grad_scale);
    if (taken) ++*applied;
    const double t = static_cast<double>(*applied);
    gate[0] = taken ? T(1) : T(0);
    gate[1] = taken && *applied == 1 ? T(1) : T(0);
    gate[2] = T(1 - math::pow(beta1, t));
    gate[3] = T(math::sqrt(1 - math::pow(beta2, t)));
  }
};

// A training loop's running totals, added to on the device after each step so that reading the
// loss is the loop's choice, not a sync per step. totals (f64): [0] sum of loss * tokens over taken
// steps, [1] their tokens, [2] steps taken, [3] steps dropped, [4] the last taken step's norm.
template <class T> struct StepMeterAdd {
  const T* loss;  // the step's mean loss per token
  const T* norm;  // its gradient norm, or null
  const T* gate;  // the optimizer's StepGate, or null: taken
  double tokens;
  double* totals;
  KILN_HD void operator()(int64_t) const {
    if (gate && gate[0] == T(0)) {
      totals[3] += 1;
      return;
    }
    totals[0] += static_cast<double>(*loss) * tokens;
    totals[1] += tokens;
    totals[2] += 1;
    if (norm) totals[4] = static_cast<double>(*norm);
  }
};

// p -= lr * d, d = g + wd p; with momentum: buf = mu buf + (1 - dampening) d (buf = d on the
// first step), d = nesterov ? d + mu buf : buf.
template <class T> struct SgdUpdate {
  T momentum, dampening, weight_decay;
  bool nesterov;
  const T* lr;
  const T* grad_scale;
  const T* gate;  // StepGate's
  struct Scalars {
    T lr, scale;
    bool first;
  };
  KILN_HD bool dropped() const { return gate[0] == T(0); }
  KILN_HD Scalars scalars() const {
    return {*lr, grad_scale ? *grad_scale : T(1), gate[1] != T(0)};
  }
  KILN_HD void operator()(T* const* ptr, int64_t i, const Scalars& s) const {  // ptr: p, g, buf
    const T lr = s.lr;
    T g = ptr[1][i] * s.scale + weight_decay * ptr[0][i];
    if (momentum != T(0)) {
      T buf = s.first ? g : momentum * ptr[2][i] + (T(1) - dampening) * g;
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
  T beta1, beta2, eps, weight_decay;
  bool decoupled;
  const T* lr;
  const T* grad_scale;
  const T* gate;  // StepGate's: taken, first, bc1, sqrt(bc2)
  struct Scalars {
    T lr, scale, bias_correction1, sqrt_bias_correction2;
  };
  KILN_HD bool dropped() const { return gate[0] == T(0); }
  KILN_HD Scalars scalars() const {
    return {*lr, grad_scale ? *grad_scale : T(1), gate[2], gate[3]};
  }
  KILN_HD void operator()(T* const* ptr, int64_t i, const Scalars& s) const {  // ptr: p, g, m, v
    const T lr = s.lr;
    T p = ptr[0][i];
    T g = ptr[1][i] * s.scale;
    if (decoupled) {
      p *= T(1) - lr * weight_decay;
    } else {
      g += weight_decay * p;
    }
    T m = beta1 * ptr[2][i] + (T(1) - beta1) * g;
    T v = beta2 * ptr[3][i] + (T(1) - beta2) * g * g;
    ptr[2][i] = m;
    ptr[3][i] = v;
    ptr[0][i] = p - (lr / s.bias_correction1) * m / (math::sqrt(v) / s.sqrt_bias_correction2 + eps);
  }
};

// sq = a sq + (1 - a) g^2; without momentum p -= lr g / (sqrt(sq) + eps); with momentum
// buf = mu buf + g / (sqrt(sq) + eps), p -= lr buf.
template <class T> struct RmspropUpdate {
  T alpha, eps, weight_decay, momentum;
  const T* lr;
  const T* grad_scale;
  const T* gate;  // StepGate's
  struct Scalars {
    T lr, scale;
  };
  KILN_HD bool dropped() const { return gate[0] == T(0); }
  KILN_HD Scalars scalars() const { return {*lr, grad_scale ? *grad_scale : T(1)}; }
  // ptr: p, g, sq, buf (buf only with momentum)
  KILN_HD void operator()(T* const* ptr, int64_t i, const Scalars& s) const {
    const T lr = s.lr;
    T g = ptr[1][i] * s.scale + weight_decay * ptr[0][i];
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
  const T* gate;  // an optimizer's StepGate: no update after a dropped step; or null
  struct Scalars {};
  KILN_HD bool dropped() const { return gate && gate[0] == T(0); }
  KILN_HD Scalars scalars() const { return {}; }
  KILN_HD void operator()(T* const* ptr, int64_t i, const Scalars&) const {  // ptr: avg, p
    ptr[0][i] = decay * ptr[0][i] + (T(1) - decay) * ptr[1][i];
  }
};

struct SgdArgs {
  double momentum, dampening, weight_decay;
  bool nesterov;
};
struct AdamArgs {
  double beta1, beta2, eps, weight_decay;
  bool decoupled;
};
struct RmspropArgs {
  double alpha, eps, weight_decay, momentum;
};

class MultiTensorPlan;
using TensorLists = std::vector<std::vector<Tensor>>;
// Runs StepGate: applied is an i64 [] and gate a [4] in the grad_scale's dtype, both on its device.
void step_gate(const Tensor& grad_scale, const Tensor& applied, const Tensor& gate, double beta1,
               double beta2);
// Runs StepMeterAdd: loss (and norm, gate, which may be undefined) are device scalars of one float
// dtype, totals an f64 [5] on the same device.
void step_meter_add(const Tensor& loss, const Tensor& norm, const Tensor& gate, double tokens,
                    const Tensor& totals);
// lists: {params, grads, state...} as each functor's ptr comment says. lr: a scalar in the params'
// dtype on their device; grad_scale: the same, or undefined for 1; gate: what step_gate wrote.
void sgd_step(MultiTensorPlan& plan, const TensorLists& lists, const SgdArgs& args,
              const Tensor& lr, const Tensor& grad_scale, const Tensor& gate);
void adam_step(MultiTensorPlan& plan, const TensorLists& lists, const AdamArgs& args,
               const Tensor& lr, const Tensor& grad_scale, const Tensor& gate);
void rmsprop_step(MultiTensorPlan& plan, const TensorLists& lists, const RmspropArgs& args,
                  const Tensor& lr, const Tensor& grad_scale, const Tensor& gate);
// lists: {averages, params}. gate: an optimizer's step gate (no update when it dropped the step),
// or undefined.
void ema_update(MultiTensorPlan& plan, const TensorLists& lists, double decay, const Tensor& gate);

}  // namespace kiln::kernels
