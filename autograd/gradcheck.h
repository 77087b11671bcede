// gradcheck: compares the analytic Jacobian (backward with a one-hot output gradient, per output
// element) with central finite differences (f(x + eps) - f(x - eps)) / 2 eps, over every input
// element, in f64 on the CPU. An element passes when |analytic - numeric| <= atol + rtol *
// |numeric|.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace kiln {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
};

struct GradcheckResult {
  bool ok = true;
  double max_error = 0;  // worst |analytic - numeric|
  std::string message;   // on failure: the worst element, both values and the error
};

// `inputs` are f64 CPU tensors; floating ones are differentiated, integer ones (indices) held
// fixed. `f` must be deterministic. Its output may have any shape.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, GradcheckOptions options = {});

}  // namespace kiln
