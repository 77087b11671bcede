#include "nn/optim.h"

#include <cmath>

#include "core/cuda_runtime.h"
#include "core/profiler.h"
#include "kernels/clip_norm.h"
#include "kernels/factories.h"
#include "kernels/multi_tensor.h"
#include "kernels/optimizers.h"

namespace kiln::nn {

struct Optimizer::LaunchCache {
  kernels::MultiTensorPlan plan;
};

Optimizer::Optimizer(std::vector<Tensor> params, double lr, const char* name)
    : params_(std::move(params)),
      lr_(lr),
      name_(name),
      launch_cache_(std::make_unique<LaunchCache>()) {
  KILN_CHECK(lr >= 0, name, ": learning rate must be >= 0, got ", lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    KILN_CHECK(params_[i].defined() && params_[i].is_leaf() && params_[i].requires_grad(), name,
               ": parameter ", i, " must be a leaf that requires grad, got ",
               params_[i].describe());
  }
}

Optimizer::~Optimizer() = default;

void Optimizer::step(const Tensor& grad_scale) {
  profiler::ProfileScope scope(name_, profiler::Category::optimizer);
  std::vector<std::string> names = buffer_names();
  if (buffers_.empty()) buffers_.assign(names.size(), std::vector<Tensor>(params_.size()));
  TensorLists lists(2 + names.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;  // not used in this step's loss
    lists[0].push_back(params_[i]);
    lists[1].push_back(params_[i].grad());
    for (size_t k = 0; k < names.size(); ++k) {
      if (!buffers_[k][i].defined())
        buffers_[k][i] = zeros(params_[i].shape(), params_[i].options());
      lists[2 + k].push_back(buffers_[k][i]);
    }
  }
  ++steps_;
  if (lists[0].empty()) return;
  NoGradGuard no_grad;
  ensure_gate();
  auto [beta1, beta2] = gate_betas();
  kernels::step_gate(grad_scale, applied_, gate_, beta1, beta2);
  update(lists, grad_scale, gate_);
}

void Optimizer::set_lr(double lr) {
  KILN_CHECK(lr >= 0, name_, ": learning rate must be >= 0, got ", lr);
  lr_ = lr;
  if (lr_cell_.defined()) {
    cuda::check_not_capturing("Optimizer::set_lr");
    NoGradGuard no_grad;
    fill_(lr_cell_, lr);
  }
}

void Optimizer::ensure_gate() {
  if (gate_.defined() && lr_cell_.defined()) return;
  // Made in the first (eager) step: made inside a CUDA graph capture, their first values would be
  // written again at every replay.
  cuda::check_not_capturing("the optimizer's first step");
  Options options = params_.empty() ? Options() : params_[0].options();
  if (!lr_cell_.defined()) lr_cell_ = full({}, lr_, options);
  if (gate_.defined()) return;
  gate_ = zeros({4}, options);
  if (!applied_.defined()) applied_ = zeros({}, {DType::i64, options.device});
}

int64_t Optimizer::applied_steps() const {
  return applied_.defined() ? static_cast<int64_t>(applied_.item()) : 0;
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (Tensor& p : params_) {
    if (set_to_none) {
      p.set_grad(Tensor());
    } else if (p.grad().defined()) {
      zero_(p.grad());
    }
  }
}

StateDict Optimizer::state_dict() const {
  StateDict state;
  state["step"] = from_vector<int64_t>({applied_steps()}, {});
  state["calls"] = from_vector<int64_t>({steps_}, {});
  std::vector<std::string> names = buffer_names();
  for (size_t k = 0; k < buffers_.size(); ++k) {
    for (size_t i = 0; i < params_.size(); ++i) {
      if (buffers_[k][i].defined())
        state["state." + std::to_string(i) + "." + names[k]] = buffers_[k][i];
    }
  }
  return state;
}

void Optimizer::load_state_dict(const StateDict& state) {
  auto step = state.find("step");
  KILN_CHECK(step != state.end() && step->second.numel() == 1, name_,
             "::load_state_dict: no 'step' entry");
  std::vector<std::string> names = buffer_names();
  std::vector<std::vector<Tensor>> loaded(names.size(), std::vector<Tensor>(params_.size()));
  auto calls = state.find("calls");  // absent from checkpoints older than the device gate
  KILN_CHECK(calls == state.end() || calls->second.numel() == 1, name_,
             "::load_state_dict: 'calls' must hold one number, got ", calls->second.describe());
  for (const auto& [key, value] : state) {
    if (key == "step" || key == "calls") continue;
    bool matched = false;
    for (size_t k = 0; k < names.size() && !matched; ++k) {
      for (size_t i = 0; i < params_.size() && !matched; ++i) {
        if (key != "state." + std::to_string(i) + "." + names[k]) continue;
        KILN_CHECK(value.shape() == params_[i].shape(), name_, "::load_state_dict: '", key, "' is ",
                   value.describe(), " but parameter ", i, " is ", params_[i].describe());
        loaded[k][i] = copy_to(value, params_[i].options());
        matched = true;
      }
    }
    KILN_CHECK(matched, name_, "::load_state_dict: unexpected entry '", key, "' (", params_.size(),
               " parameters)");
  }
  buffers_ = std::move(loaded);
  const auto applied = static_cast<int64_t>(step->second.item());
  steps_ = calls == state.end() ? applied : static_cast<int64_t>(calls->second.item());
  Options options = params_.empty() ? Options() : params_[0].options();
  applied_ = from_vector<int64_t>({applied}, {}, options.device);
  gate_ = Tensor();
}

SGD::SGD(std::vector<Tensor> params, SgdOptions o)
    : Optimizer(std::move(params), o.lr, "SGD"), options(o) {
  KILN_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
             "SGD: nesterov needs momentum > 0 and no dampening");
}

std::vector<std::string> SGD::buffer_names() const {
  if (options.momentum == 0) return {};
  return {"momentum_buffer"};
}

void SGD::update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) {
  kernels::sgd_step(
      launch_cache().plan, lists,
      {options.momentum, options.dampening, options.weight_decay, options.nesterov}, lr_cell_,
      grad_scale, gate);
}

Adam::Adam(std::vector<Tensor> params, AdamOptions o, bool decoupled_)
    : Optimizer(std::move(params), o.lr, decoupled_ ? "AdamW" : "Adam"),
      options(o),
      decoupled(decoupled_) {
  KILN_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, name_,
             ": betas must be in [0, 1), got ", o.beta1, ", ", o.beta2);
}

void Adam::update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) {
  kernels::adam_step(
      launch_cache().plan, lists,
      {options.beta1, options.beta2, options.eps, options.weight_decay, decoupled}, lr_cell_,
      grad_scale, gate);
}

RMSprop::RMSprop(std::vector<Tensor> params, RmspropOptions o)
    : Optimizer(std::move(params), o.lr, "RMSprop"), options(o) {}

std::vector<std::string> RMSprop::buffer_names() const {
  if (options.momentum == 0) return {"square_avg"};
  return {"square_avg", "momentum_buffer"};
}

void RMSprop::update(const TensorLists& lists, const Tensor& grad_scale, const Tensor& gate) {
  kernels::rmsprop_step(launch_cache().plan, lists,
                        {options.alpha, options.eps, options.weight_decay, options.momentum},
                        lr_cell_, grad_scale, gate);
}

namespace {
ClipFactor clip(const std::vector<Tensor>& params, double max_norm, bool scale_grads) {
  profiler::ProfileScope scope("clip_grad_norm", profiler::Category::clip);
  thread_local kernels::MultiTensorPlan plan;  // reused while the same gradients are clipped
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  Options options = params.empty() ? Options() : params[0].options();
  ClipFactor out{zeros({}, options), ones({}, options)};
  if (grads.empty()) return out;
  kernels::clip_grad_norm(plan, grads, max_norm, out.norm, out.scale, scale_grads);
  return out;
}
}  // namespace

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  return clip(params, max_norm, /*scale_grads=*/true).norm;
}

ClipFactor clip_grad_norm_factor(const std::vector<Tensor>& params, double max_norm) {
  return clip(params, max_norm, /*scale_grads=*/false);
}

void StepMeter::add(const Tensor& loss, const Tensor& norm, const Tensor& step_gate,
                    double tokens) {
  if (!totals_.defined()) totals_ = zeros({5}, {DType::f64, loss.device()});
  kernels::step_meter_add(loss, norm, step_gate, tokens, totals_);
}

StepMeter::Totals StepMeter::take() {
  if (!totals_.defined()) return {};
  std::vector<double> t = totals_.to_vector<double>();  // the one sync
  zero_(totals_);
  return {t[0], t[1], static_cast<int64_t>(t[2]), static_cast<int64_t>(t[3]), t[4]};
}

StepDecayLr::StepDecayLr(double lr, int64_t step_size, double gamma)
    : lr_(lr), gamma_(gamma), step_size_(step_size) {
  KILN_CHECK(step_size > 0, "StepDecayLr: step_size must be > 0, got ", step_size);
}
double StepDecayLr::lr_at(int64_t step) const {
  return lr_ * std::pow(gamma_, static_cast<double>((std::max<int64_t>(step, 1) - 1) / step_size_));
}

WarmupInverseSqrtLr::WarmupInverseSqrtLr(double lr, int64_t warmup) : lr_(lr), warmup_(warmup) {
  KILN_CHECK(warmup > 0, "WarmupInverseSqrtLr: warmup must be > 0, got ", warmup);
}
double WarmupInverseSqrtLr::lr_at(int64_t step) const {
  double s = static_cast<double>(std::max<int64_t>(step, 1)), w = static_cast<double>(warmup_);
  return s <= w ? lr_ * s / w : lr_ * std::sqrt(w / s);
}

WarmupCosineLr::WarmupCosineLr(double lr, int64_t warmup, int64_t total_steps, double min_lr)
    : lr_(lr), min_lr_(min_lr), warmup_(warmup), total_(total_steps) {
  KILN_CHECK(warmup >= 0 && total_steps > warmup,
             "WarmupCosineLr: need 0 <= warmup < total_steps, got ", warmup, " and ", total_steps);
}
double WarmupCosineLr::lr_at(int64_t step) const {
  double s = static_cast<double>(std::max<int64_t>(step, 1));
  if (s <= warmup_) return lr_ * s / static_cast<double>(warmup_);
  if (step >= total_) return min_lr_;
  double progress = (s - warmup_) / static_cast<double>(total_ - warmup_);
  return min_lr_ + 0.5 * (lr_ - min_lr_) * (1.0 + std::cos(3.141592653589793 * progress));
}

}  // namespace kiln::nn
