// Weight averaging (see averaging.h): the exponential moving average and the mean of state dicts.
#include "nn/averaging.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/grad_mode.h"
#include "core/profiler.h"
#include "kernels/factories.h"
#include "kernels/multi_tensor.h"
#include "kernels/optimizers.h"

namespace kiln::nn {

ExponentialMovingAverage::ExponentialMovingAverage(const Module& module, double decay, bool warmup)
    : params_(module.named_parameters()),
      decay_(decay),
      warmup_(warmup),
      plan_(std::make_unique<kernels::MultiTensorPlan>()) {
  KILN_CHECK(decay > 0 && decay < 1, "ExponentialMovingAverage: decay must be in (0, 1), got ",
             decay);
  for (const auto& [name, p] : params_) averages_.push_back(copy_to(p, p.options()));
}

ExponentialMovingAverage::~ExponentialMovingAverage() = default;

double ExponentialMovingAverage::decay_at(int64_t t) const {
  if (!warmup_) return decay_;
  return std::min(decay_, (1.0 + static_cast<double>(t)) / (10.0 + static_cast<double>(t)));
}

void ExponentialMovingAverage::check_not_swapped(const char* what) const {
  KILN_CHECK(!swapped_, "ExponentialMovingAverage::", what,
             ": the averages are swapped into the module; swap back first");
}

void ExponentialMovingAverage::update(const Tensor& step_gate) {
  profiler::ProfileScope scope("ema update", profiler::Category::optimizer);
  check_not_swapped("update");
  ++num_updates_;
  if (params_.empty()) return;
  kernels::TensorLists lists(2);
  for (size_t i = 0; i < params_.size(); ++i) {
    lists[0].push_back(averages_[i]);
    lists[1].push_back(params_[i].second);
  }
  kernels::ema_update(*plan_, lists, decay_at(num_updates_), step_gate);
}

StateDict ExponentialMovingAverage::state_dict() const {
  check_not_swapped("state_dict");
  StateDict state;
  for (size_t i = 0; i < params_.size(); ++i) state[params_[i].first] = averages_[i];
  return state;
}

void ExponentialMovingAverage::load_state_dict(const StateDict& averages, int64_t num_updates) {
  check_not_swapped("load_state_dict");
  KILN_CHECK(num_updates >= 0, "ExponentialMovingAverage::load_state_dict: update count must be ",
             ">= 0, got ", num_updates);
  std::ostringstream problems;
  int count = 0;
  for (const auto& [name, p] : params_) {
    auto found = averages.find(name);
    if (found == averages.end()) {
      problems << "\n  missing: " << name << " (" << p.describe() << ")", ++count;
    } else if (found->second.shape() != p.shape() || found->second.dtype() != p.dtype()) {
      problems << "\n  mismatch: " << name << " is " << found->second.describe()
               << ", the parameter is " << p.describe(),
          ++count;
    }
  }
  for (const auto& entry : averages) {  // not a structured binding: clang 14 cannot capture one
    const std::string& name = entry.first;
    bool known = std::any_of(params_.begin(), params_.end(),
                             [&](const auto& named) { return named.first == name; });
    if (!known) {
      problems << "\n  unexpected: " << name << " (" << entry.second.describe() << ")", ++count;
    }
  }
  KILN_CHECK(count == 0, "ExponentialMovingAverage::load_state_dict: ", count,
             " problem(s), nothing was loaded:", problems.str());
  for (size_t i = 0; i < params_.size(); ++i) copy_(averages_[i], averages.at(params_[i].first));
  num_updates_ = num_updates;
}

void ExponentialMovingAverage::swap() {
  NoGradGuard no_grad;  // the parameters require grad; these copies are not training
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    Tensor own = copy_to(p, p.options());
    copy_(p, averages_[i]);
    copy_(averages_[i], own);
  }
  swapped_ = !swapped_;
}

AveragedWeightsScope::AveragedWeightsScope(ExponentialMovingAverage& ema) : ema_(ema) {
  KILN_CHECK(!ema.swapped(), "AveragedWeightsScope: the averages are already swapped in");
  ema_.swap();
}

AveragedWeightsScope::~AveragedWeightsScope() {
  // A destructor must not throw: a copy that fails here means a broken device, which the next
  // operation on it reports.
  try {
    ema_.swap();
  } catch (const Error&) {
  }
}

StateDict average_state_dicts(const std::vector<StateDict>& dicts,
                              const std::vector<std::string>& sources) {
  KILN_CHECK(!dicts.empty() && dicts.size() == sources.size(),
             "average_state_dicts: give one name per state dict and at least one dict, got ",
             dicts.size(), " dicts and ", sources.size(), " names");
  const StateDict& first = dicts[0];
  for (size_t k = 1; k < dicts.size(); ++k) {
    for (const auto& [name, value] : dicts[k]) {
      KILN_CHECK(first.count(name), "average_state_dicts: ", sources[k], " has '", name,
                 "', which ", sources[0], " does not have");
    }
  }
  StateDict mean;
  for (const auto& [name, value] : first) {
    KILN_CHECK(value.dtype() == DType::f32 || value.dtype() == DType::f64,
               "average_state_dicts: ", sources[0], ": '", name, "' is ", value.describe(),
               "; only float tensors can be averaged");
    Tensor sum = copy_to(value, {DType::f64, value.device()});
    for (size_t k = 1; k < dicts.size(); ++k) {
      auto found = dicts[k].find(name);
      KILN_CHECK(found != dicts[k].end(), "average_state_dicts: ", sources[k], " has no '", name,
                 "', which ", sources[0], " has");
      const Tensor& other = found->second;
      KILN_CHECK(other.shape() == value.shape() && other.dtype() == value.dtype(),
                 "average_state_dicts: '", name, "' is ", other.describe(), " in ", sources[k],
                 " but ", value.describe(), " in ", sources[0]);
      add_(sum, copy_to(other, {DType::f64, value.device()}));
    }
    mul_(sum, 1.0 / static_cast<double>(dicts.size()));
    mean[name] = copy_to(sum, value.options());
  }
  return mean;
}

}  // namespace kiln::nn
