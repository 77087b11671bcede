// Averages of a model's weights: an exponential moving average kept during training, and the
// mean of several saved state dicts (checkpoint averaging).
//
// ExponentialMovingAverage keeps a shadow copy of every parameter, updated after each optimizer
// step t = 1, 2, ...:
//   avg = d_t avg + (1 - d_t) p,   d_t = min(decay, (1 + t) / (10 + t))
// The shadow starts as a copy of the parameters, as in torch.optim.swa_utils.AveragedModel and
// timm's ModelEmaV2, so no bias correction (Adam's division by 1 - decay^t, for moments that start
// at zero) is needed. The warm-up d_t is TensorFlow's ExponentialMovingAverage with num_updates and
// Marian's --exponential-smoothing: while the weights are still near their random start the
// average follows them closely (d_1 = 2/11, d_10 = 0.55, d_90 = 0.91), and the set decay takes
// over once (1 + t) / (10 + t) exceeds it (after 8,990 updates for 0.999). Without the warm-up
// (warmup = false) d_t = decay, as in AveragedModel's get_ema_multi_avg_fn and ModelEmaV2, and the
// average needs some 1 / (1 - decay) steps to forget the initial weights.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace kiln::kernels {
class MultiTensorPlan;
}

namespace kiln::nn {

class ExponentialMovingAverage {
 public:
  // Averages `module`'s parameters, on their device and in their dtype. Keeps handles to them:
  // build it after the module's last move (Module::to). decay in (0, 1).
  ExponentialMovingAverage(const Module& module, double decay, bool warmup = true);
  ~ExponentialMovingAverage();
  ExponentialMovingAverage(const ExponentialMovingAverage&) = delete;
  ExponentialMovingAverage& operator=(const ExponentialMovingAverage&) = delete;

  // After each optimizer step: one multi-tensor launch over all parameters, nothing read back.
  // step_gate: the optimizer's Optimizer::step_gate(), so that a step it dropped on the device
  // leaves the average alone too (the update count, kept on the host, still goes up); or
  // undefined.
  void update(const Tensor& step_gate = Tensor());
  // d_t of update t = 1, 2, ... (above).
  double decay_at(int64_t t) const;
  double decay() const { return decay_; }
  int64_t num_updates() const { return num_updates_; }

  // The averages under the parameters' names (the tensors themselves, as Module::state_dict).
  StateDict state_dict() const;
  // Copies `averages` in (every parameter's name, with its shape and dtype; one error lists every
  // problem) and sets the update count: what resume restores.
  void load_state_dict(const StateDict& averages, int64_t num_updates);

  // Exchanges the values of the parameters and of their averages: the module computes with the
  // averages until the next swap(). update() and state_dict() refuse while swapped.
  void swap();
  bool swapped() const { return swapped_; }

 private:
  void check_not_swapped(const char* what) const;

  NamedTensors params_;
  std::vector<Tensor> averages_;  // averages_[i] belongs to params_[i]
  double decay_;
  bool warmup_;
  int64_t num_updates_ = 0;
  bool swapped_ = false;
  std::unique_ptr<kernels::MultiTensorPlan> plan_;
};

// The averaged weights in the module for this object's lifetime (validation), its own weights
// back afterwards, also when an exception leaves the scope.
class AveragedWeightsScope {
 public:
  explicit AveragedWeightsScope(ExponentialMovingAverage& ema);
  ~AveragedWeightsScope();
  AveragedWeightsScope(const AveragedWeightsScope&) = delete;
  AveragedWeightsScope& operator=(const AveragedWeightsScope&) = delete;

 private:
  ExponentialMovingAverage& ema_;
};

// The elementwise mean of state dicts that hold the same names with the same shapes and float
// dtypes: summed in f64, times 1 / n, rounded once to the dtype, on the first dict's devices (so
// the mean of identical f32 dicts is exactly them). `sources` names each dict in errors (a
// checkpoint folder, say).
StateDict average_state_dicts(const std::vector<StateDict>& dicts,
                              const std::vector<std::string>& sources);

}  // namespace kiln::nn
