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
  // every gradient first (e.g. a clip factor), or undefined.
  void step(const Tensor& grad_scale = Tensor());
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t step_count() const { return steps_; }
  // "step" (i64 []) and every state buffer as "state.<param index>.<buffer name>", for exact
  // resume.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

 protected:
  // Buffers kept per parameter, allocated (zero) on first use: e.g. {"exp_avg", "exp_avg_sq"}.
  virtual std::vector<std::string> buffer_names() const = 0;
  // Applies the update with `lists` = {params, grads, buffers...} of the parameters with grads.
  virtual void update(const TensorLists& lists, const Tensor& grad_scale) = 0;

  std::vector<Tensor> params_;
  double lr_;
  int64_t steps_ = 0;
  const char* name_;

  // What the built-in optimizers' fused launches keep between steps (the device table of the
  // multi-tensor launch); its contents are private to nn/optim.cpp.
  struct LaunchCache;
  LaunchCache& launch_cache() { return *launch_cache_; }

 private:
  std::vector<std::vector<Tensor>> buffers_;  // [buffer kind][param]
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
  void update(const TensorLists& lists, const Tensor& grad_scale) override;
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
  void update(const TensorLists& lists, const Tensor& grad_scale) override;
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
  void update(const TensorLists& lists, const Tensor& grad_scale) override;
};

// Scales all gradients so their global L2 norm is at most max_norm (two launches on CUDA for any
// number of tensors; deterministic). Returns the norm before clipping as a device scalar: read it
// (item()) only when you need it. A non-finite norm leaves the gradients untouched.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// The same clip without touching the gradients: norm (before clipping) and scale (the clip factor,
// 1 when the norm is under max_norm or not finite) as device scalars. Pass `scale` to
// Optimizer::step, whose fused update multiplies every gradient by it: one pass over the gradients
// less than clip_grad_norm + step(), the same numbers, and nothing read back to the host.
struct ClipFactor {
  Tensor norm, scale;
};
ClipFactor clip_grad_norm_factor(const std::vector<Tensor>& params, double max_norm);

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
