// Optimizers (fused: one multi-tensor launch per step on CUDA, OpenMP loops on the CPU; the
// update math is in kernels/optimizers.h), global gradient-norm clipping, and learning-rate
// schedules. Formulas and defaults follow torch.optim.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace kiln::nn {

// lists[l][n]: tensor n of list l; an optimizer's update gets {params, grads, buffers...}, each
// list holding the parameters that have a gradient this step, in the same order.
using TensorLists = std::vector<std::vector<Tensor>>;

class Optimizer {
 public:
  Optimizer(std::vector<Tensor> params, double lr, const char* name);
  virtual ~Optimizer();

  // One update of every parameter that has a gradient. grad_scale: a device scalar multiplying
  // every gradient first (e.g. a clip factor), or undefined. A non-finite grad_scale (the clip
  // factor of a non-finite gradient norm) drops the update on the device: parameters and state
  // stay as they were, and nothing is read back to the host, so a step never waits for the device.
  void step(const Tensor& grad_scale = Tensor());
  // Clears the gradients before the next backward. set_to_none (PyTorch's default since 2.0):
  // each parameter's .grad becomes undefined and the next backward hands it its gradient tensor
  // itself (autograd/engine.cpp) instead of adding into zeros, which saves a fill and an add over
  // every parameter a step (large GRU step: 92 MB filled and 174 MB read or written). Otherwise
  // the gradients are zeroed in place and keep their memory, as a captured CUDA graph needs.
  void zero_grad(bool set_to_none = false);
  double lr() const { return lr_; }
  // Also writes the device copy the update reads (a kernel with the value as its argument, no
  // sync), so a CUDA graph replaying step() takes the new rate. Not inside a capture: the write
  // would be replayed with this value.
  void set_lr(double lr);
  // Calls of step(), dropped ones included: what learning-rate schedules count.
  int64_t step_count() const { return steps_; }
  // A replayed CUDA graph ran step() on the device without calling it: count it.
  void count_replayed_step() { ++steps_; }
  // Updates actually applied (Adam's bias correction counts these). Reads the device.
  int64_t applied_steps() const;
  // The device gate of the last step() (kernels::StepGate): element 0 is 1 if it was taken, 0 if
  // dropped. What follows an update on the device (a weight average, a loss meter) reads it so as
  // to skip a dropped step too. Undefined before the first step.
  const Tensor& step_gate() const { return gate_; }
  // "step" (i64 [], the applied updates), "calls" (i64 [], step_count()) and every state buffer as
  // "state.<param index>.<buffer name>", for exact resume.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 protected:
  // Buffers kept per parameter, allocated (zero) on first use: e.g. {"exp_avg", "exp_avg_sq"}.
  virtual std::vector<std::string> buffer_names() const = 0;
  // Applies the update with `lists` = {params, grads, buffers...} of the parameters with grads;
  // gate: this step's kernels::StepGate values on the device.
  virtual void update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) = 0;
  // Adam's betas, for the bias corrections the gate computes (0 for the others).
  virtual std::pair<double, double> gate_betas() const { return {0.0, 0.0}; }

  std::vector<Tensor> params_;
  double lr_;
  Tensor lr_cell_;  // [] in the parameters' dtype and device: the rate the update reads
  int64_t steps_ = 0;
  const char* name_;

  // What the built-in optimizers' fused launches keep between steps (the device table of the
  // multi-tensor launch); its contents are private to nn/optim.cpp.
  struct LaunchCache;
  LaunchCache& launch_cache() { return *launch_cache_; }

 private:
  std::vector<std::vector<Tensor>> buffers_;  // [buffer kind][param]
  Tensor applied_;                            // i64 [] on the parameters' device: updates applied
  Tensor gate_;  // [4] in the parameters' dtype and device: kernels::StepGate's output
  void ensure_gate();
  std::unique_ptr<LaunchCache> launch_cache_;
};

struct SgdOptions {
  double lr = 0.01, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SgdOptions options);
  SgdOptions options;

 protected:
  std::vector<std::string> buffer_names() const override;
  void update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) override;
};

struct AdamOptions {
  double lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
};
// Adam (L2 weight decay added to the gradient) or, with decoupled = true, AdamW.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled = false);
  AdamOptions options;
  bool decoupled;

 protected:
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::pair<double, double> gate_betas() const override { return {options.beta1, options.beta2}; }
  void update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) override;
};
class AdamW : public Adam {
 public:
  // PyTorch's AdamW default weight decay is 0.01.
  AdamW(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, true) {}
};

struct RmspropOptions {
  double lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
};
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Tensor> params, RmspropOptions options);
  RmspropOptions options;

 protected:
  std::vector<std::string> buffer_names() const override;
  void update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) override;
};

// Scales all gradients so their global L2 norm is at most max_norm (two launches on CUDA for any
// number of tensors; deterministic). Returns the norm before clipping as a device scalar: read it
// (item()) only when you need it. A non-finite norm leaves the gradients untouched.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// The same clip without touching the gradients: norm (before clipping) and scale (the clip factor:
// 1 when the norm is under max_norm, NaN when the norm is not finite) as device scalars. Pass
// `scale` to Optimizer::step, whose fused update multiplies every gradient by it, and drops the
// step when it is NaN: one pass over the gradients less than clip_grad_norm + step(), the same
// numbers, and nothing read back to the host.
struct ClipFactor {
  Tensor norm, scale;
};
ClipFactor clip_grad_norm_factor(const std::vector<Tensor>& params, double max_norm);

// The running loss of a training loop, kept on the device: add() after each step costs one tiny
// launch and reads nothing back, and take() reads (one sync) and restarts the totals. A step the
// optimizer dropped (a non-finite gradient norm) counts in `dropped` only.
class StepMeter {
 public:
  struct Totals {
    double loss_sum = 0;  // sum of each taken step's mean loss times its tokens
    double tokens = 0;    // tokens of the taken steps
    int64_t taken = 0, dropped = 0;
    double last_norm = 0;  // the gradient norm of the last taken step (with a norm)
  };
  // loss: the step's mean loss per token (device scalar); norm: its gradient norm or undefined;
  // step_gate: Optimizer::step_gate() or undefined (taken); tokens: what the loss is a mean over.
  void add(const Tensor& loss, const Tensor& norm, const Tensor& step_gate, double tokens);
  // The totals since the last take(), then zero.
  Totals take();

 private:
  Tensor totals_;  // f64 [5] on the loss's device (kernels::StepMeterAdd)
};

// Learning-rate schedules: lr_at(step) for step = 1, 2, ... (the optimizer's step count + 1).
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;
};
class ConstantLr : public LrSchedule {
 public:
  explicit ConstantLr(double lr) : lr_(lr) {}
  double lr_at(int64_t) const override { return lr_; }

 private:
  double lr_;
};
// lr * gamma^floor((step - 1) / step_size)
class StepDecayLr : public LrSchedule {
 public:
  StepDecayLr(double lr, int64_t step_size, double gamma);
  double lr_at(int64_t step) const override;

 private:
  double lr_, gamma_;
  int64_t step_size_;
};
// Linear warmup to lr over `warmup` steps, then lr * sqrt(warmup / step).
class WarmupInverseSqrtLr : public LrSchedule {
 public:
  WarmupInverseSqrtLr(double lr, int64_t warmup);
  double lr_at(int64_t step) const override;

 private:
  double lr_;
  int64_t warmup_;
};
// Linear warmup, then cosine decay from lr to min_lr at total_steps (min_lr after).
class WarmupCosineLr : public LrSchedule {
 public:
  WarmupCosineLr(double lr, int64_t warmup, int64_t total_steps, double min_lr = 0);
  double lr_at(int64_t step) const override;

 private:
  double lr_, min_lr_;
  int64_t warmup_, total_;
};

}  // namespace kiln::nn
