#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/grad_mode.h"

namespace kiln {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, GradcheckOptions options) {
  std::vector<Tensor> leaves;
  for (const Tensor& input : inputs) {
    KILN_CHECK(input.device().is_cpu(), "gradcheck: inputs must be on the CPU, got ",
               input.describe());
    KILN_CHECK(input.dtype() == DType::f64 || !is_floating(input.dtype()),
               "gradcheck: floating inputs must be f64, got ", input.describe());
    Tensor leaf = copy_to(input, input.options());
    if (is_floating(leaf.dtype())) leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  Tensor out = f(leaves);
  KILN_CHECK(out.dtype() == DType::f64, "gradcheck: the function must return f64, got ",
             out.describe());
  int64_t out_n = out.numel();

  // analytic[k][j * n_k + e]: d out[j] / d input_k[e]
  std::vector<std::vector<double>> analytic(leaves.size());
  for (size_t k = 0; k < leaves.size(); ++k) analytic[k].assign(out_n * leaves[k].numel(), 0.0);
  for (int64_t j = 0; j < out_n; ++j) {
    for (Tensor& leaf : leaves) leaf.set_grad(Tensor());
    std::vector<double> one_hot(out_n, 0.0);
    one_hot[j] = 1.0;
    backward(out, from_vector(one_hot, out.shape()), /*retain_graph=*/true);
    for (size_t k = 0; k < leaves.size(); ++k) {
      Tensor grad = leaves[k].grad();
      if (!grad.defined()) continue;  // the output does not depend on this input
      std::vector<double> g = grad.to_vector<double>();
      for (size_t e = 0; e < g.size(); ++e) analytic[k][j * g.size() + e] = g[e];
    }
  }

  GradcheckResult result;
  double worst_ratio = 0;
  NoGradGuard no_grad;
  for (size_t k = 0; k < leaves.size(); ++k) {
    if (!is_floating(leaves[k].dtype())) continue;
    int64_t n = leaves[k].numel();
    double* x = leaves[k].data<double>();
    for (int64_t e = 0; e < n; ++e) {
      double saved = x[e];
      x[e] = saved + options.eps;
      std::vector<double> plus = f(leaves).to_vector<double>();
      x[e] = saved - options.eps;
      std::vector<double> minus = f(leaves).to_vector<double>();
      x[e] = saved;
      for (int64_t j = 0; j < out_n; ++j) {
        double numeric = (plus[j] - minus[j]) / (2 * options.eps);
        double exact = analytic[k][j * n + e];
        double error = std::fabs(exact - numeric);
        double bound = options.atol + options.rtol * std::fabs(numeric);
        result.max_error = std::max(result.max_error, error);
        if (!(error <= bound) && error / bound > worst_ratio) {
          worst_ratio = error / bound;
          std::ostringstream msg;
          msg << "gradcheck failed: d output[" << j << "] / d input" << k << "[" << e
              << "]: analytic " << exact << ", numeric " << numeric << ", error " << error
              << " > bound " << bound << " (atol " << options.atol << ", rtol " << options.rtol
              << ")";
          result.ok = false;
          result.message = msg.str();
        }
      }
    }
  }
  return result;
}

}  // namespace kiln
