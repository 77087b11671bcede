// nn::Module: named parameters and submodules, train/eval, device moves, state dicts. A layer is
// a small subclass that registers its parameters in its constructor and has a forward method of
// whatever signature suits it (there is no virtual forward; STYLE rule 15).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/tensor.h"
#include "kernels/factories.h"

namespace kiln::nn {

// name -> tensor, sorted by name: a checkpoint's contents (core/safetensors.h reads and writes it).
using StateDict = std::map<std::string, Tensor>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter, depth first in registration order, named "child.grandchild.name".
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;  // total elements
  // The parameters themselves (not copies), under their names: PyTorch's names and layouts.
  StateDict state_dict() const;
  // Copies values into the parameters. Every problem is listed in one kiln::Error: missing and
  // unexpected names (when strict) and shape or dtype mismatches (always).
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves every parameter to `device` in place: every handle to a parameter sees the move.
  // Gradients are dropped; create optimizers after moving.
  void to(Device device);
  // As Optimizer::zero_grad (nn/optim.h): zeroed in place, or with set_to_none made undefined.
  void zero_grad(bool set_to_none = false);

 protected:
  // Registers `value` as a parameter (requires_grad set) and returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_name(name);
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void check_name(const std::string& name) const;
  void collect(const std::string& prefix, NamedTensors& out) const;

  NamedTensors parameters_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A new parameter's initial values, as the layers draw them: uniform in [low, high) or normal(mean,
// std) from kiln's Philox stream; while a SkipInitScope is alive on this thread, left
// uninitialized (kiln::empty) and the stream not advanced.
Tensor init_uniform(const Shape& shape, double low, double high, Options options);
Tensor init_normal(const Shape& shape, double mean, double std, Options options);

// For a model whose every parameter a checkpoint overwrites next (load_state_dict, strict by
// default, checks that each one is there): the random draws of its construction are wasted, and
// were 57% of `kiln translate`'s start on a 16.7M-parameter model. Values read before the load
// are garbage. Scopes nest; each restores what it found.
class SkipInitScope {
 public:
  SkipInitScope();
  ~SkipInitScope();
  SkipInitScope(const SkipInitScope&) = delete;
  SkipInitScope& operator=(const SkipInitScope&) = delete;

 private:
  bool previous_;
};

}  // namespace kiln::nn
