#include "nn/module.h"

#include <sstream>

namespace kiln::nn {

namespace {
thread_local bool skip_init = false;
}  // namespace

SkipInitScope::SkipInitScope() : previous_(skip_init) { skip_init = true; }
SkipInitScope::~SkipInitScope() { skip_init = previous_; }

Tensor init_uniform(const Shape& shape, double low, double high, Options options) {
  return skip_init ? empty(shape, options) : uniform(shape, low, high, options);
}

Tensor init_normal(const Shape& shape, double mean, double std, Options options) {
  return skip_init ? empty(shape, options) : normal(shape, mean, std, options);
}

void Module::check_name(const std::string& name) const {
  KILN_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid name '", name,
             "' (non-empty, no '.')");
  for (const auto& [existing, _] : parameters_)
    KILN_CHECK(existing != name, "Module: '", name, "' registered twice");
  for (const auto& [existing, _] : children_)
    KILN_CHECK(existing != name, "Module: '", name, "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_name(name);
  KILN_CHECK(value.defined() && value.is_leaf(), "Module: parameter '", name,
             "' must be a defined leaf tensor");
  value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

void Module::collect(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t total = 0;
  for (auto& [name, tensor] : named_parameters()) total += tensor.numel();
  return total;
}

StateDict Module::state_dict() const {
  StateDict state;
  for (auto& [name, tensor] : named_parameters()) state[name] = tensor;
  return state;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  std::ostringstream problems;
  int count = 0;
  NamedTensors params = named_parameters();
  for (auto& [name, param] : params) {
    auto found = state.find(name);
    if (found == state.end()) {
      if (strict) problems << "\n  missing: " << name << " (" << param.describe() << ")", ++count;
      continue;
    }
    const Tensor& value = found->second;
    if (value.shape() != param.shape() || value.dtype() != param.dtype()) {
      problems << "\n  mismatch: " << name << " is " << value.describe() << ", the model has "
               << param.describe();
      ++count;
    }
  }
  if (strict) {
    for (auto& [name, value] : state) {
      bool known = false;
      for (auto& [param_name, _] : params) known = known || param_name == name;
      if (!known)
        problems << "\n  unexpected: " << name << " (" << value.describe() << ")", ++count;
    }
  }
  KILN_CHECK(count == 0, "load_state_dict: ", count,
             " problem(s), nothing was loaded:", problems.str());
  NoGradGuard no_grad;
  for (auto& [name, param] : params) {
    auto found = state.find(name);
    if (found != state.end()) copy_(param, found->second);
  }
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

void Module::to(Device device) {
  for (auto& [name, param] : named_parameters()) {
    if (param.device() == device) continue;
    Tensor moved = copy_to(param, {param.dtype(), device});
    TensorImpl& impl = param.impl();
    impl.storage = moved.impl().storage;
    impl.offset_bytes = 0;
    impl.grad = nullptr;
  }
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& [name, param] : named_parameters()) {
    if (set_to_none) {
      param.set_grad(Tensor());
    } else if (param.grad().defined()) {
      zero_(param.grad());
    }
  }
}

}  // namespace kiln::nn
