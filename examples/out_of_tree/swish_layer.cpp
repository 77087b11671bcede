// A layer defined outside kiln's tree, against an installed kiln (find_package(kiln)):
//   y = swish(x W^T + b),   swish(a) = a * sigmoid(a)
// swish is a new op with its own fused kernel and its own backward, written the way kiln's ops
// are (README, "Adding an op"): a KILN_HD functor run by parallel_for, and an autograd node whose
// backward sits right below the forward. The program gradchecks the op and the layer in f64,
// then trains a small model with the layer for a few steps; it exits non-zero if anything fails.
//
// This file is compiled by the host compiler, so the functors run on the CPU; compiled as CUDA
// (nvcc, with CMake's CUDA language) the same source would launch them on the GPU.
#include <cmath>
#include <cstdio>
#include <exception>

#include "kernels/dispatch.h"
#include "kernels/math.h"
#include "kernels/parallel_for.h"
#include "kiln.h"

using namespace kiln;

// swish(a) = a s, s = sigmoid(a); d swish / da = s + a s (1 - s) = s (1 + a (1 - s)).
// Bytes: forward reads a, writes y (2n floats); backward reads a and gy, writes ga (3n).
template <class T> struct SwishForward {
  const T* a;
  T* y;
  KILN_HD void operator()(int64_t i) const {
    T s = T(1) / (T(1) + math::exp(-a[i]));
    y[i] = a[i] * s;
  }
};

template <class T> struct SwishBackward {
  const T* a;
  const T* gy;
  T* ga;
  KILN_HD void operator()(int64_t i) const {
    T s = T(1) / (T(1) + math::exp(-a[i]));
    ga[i] = gy[i] * s * (T(1) + a[i] * (T(1) - s));
  }
};

Tensor swish(const Tensor& a) {
  KILN_CHECK(is_floating(a.dtype()), "swish: expected a floating tensor, got ", a.describe());
  Tensor y = empty(a.shape(), a.options());
  KILN_DISPATCH_FLOAT(a.dtype(), "swish", [&] {
    parallel_for(a.device(), a.numel(),
                 SwishForward<scalar_t>{a.data<scalar_t>(), y.data<scalar_t>()});
  });
  if (autograd::needs_grad({a})) {
    Tensor saved_a = a.detach();  // the backward reads the input, not the output
    autograd::record("swish", {a}, {y}, [=](const autograd::TensorList& grads) {
      Tensor ga = empty(saved_a.shape(), saved_a.options());
      KILN_DISPATCH_FLOAT(saved_a.dtype(), "swish backward", [&] {
        parallel_for(saved_a.device(), saved_a.numel(),
                     SwishBackward<scalar_t>{saved_a.data<scalar_t>(), grads[0].data<scalar_t>(),
                                             ga.data<scalar_t>()});
      });
      return autograd::TensorList{ga};
    });
  }
  return y;
}

// The layer: a Module that registers its parameters and calls the op from forward.
class SwishLinear : public nn::Module {
 public:
  SwishLinear(int64_t in, int64_t out, Options options = {}) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    weight = register_parameter("weight", uniform({out, in}, -bound, bound, options));
    bias = register_parameter("bias", zeros({out}, options));
  }
  Tensor forward(const Tensor& x) const { return swish(matmul(x, weight, false, true) + bias); }

  Tensor weight, bias;
};

bool check(const char* what, const GradcheckResult& result) {
  std::printf("gradcheck %-12s %s (max error %.2e)\n", what, result.ok ? "ok" : "FAILED",
              result.max_error);
  if (!result.ok) std::printf("  %s\n", result.message.c_str());
  return result.ok;
}

int run() {
  manual_seed(1);
  // 1. Gradients, in f64 over the whole Jacobian: the op alone, then the layer's parameters.
  Tensor a = uniform({3, 4}, -3, 3, DType::f64);
  bool ok =
      check("swish", gradcheck([](const std::vector<Tensor>& in) { return swish(in[0]); }, {a}));
  SwishLinear probe(4, 3, DType::f64);
  Tensor x = uniform({5, 4}, -1, 1, DType::f64);
  ok &= check("SwishLinear", gradcheck(
                                 [](const std::vector<Tensor>& in) {
                                   return swish(matmul(in[0], in[1], false, true) + in[2]);
                                 },
                                 {x, probe.weight.detach(), probe.bias.detach()}));

  // 2. Training: two SwishLinear layers and a Linear head fit y = tanh(3 x.u) + |x|^2 with Adam.
  SwishLinear hidden1(2, 32), hidden2(32, 32);
  nn::Linear head(32, 1);
  std::vector<Tensor> params;
  for (const nn::Module* m : std::vector<const nn::Module*>{&hidden1, &hidden2, &head}) {
    for (const Tensor& p : m->parameters()) params.push_back(p);
  }
  nn::Adam optimizer(params, nn::AdamOptions{0.01});
  Tensor inputs = uniform({256, 2}, -1, 1);
  Tensor u = uniform({1, 2}, -1, 1);
  Tensor targets = tanh(matmul(inputs, u, false, true) * 3.0) + sum(inputs * inputs, 1, true);
  double first = 0, last = 0;
  for (int step = 1; step <= 200; ++step) {
    optimizer.zero_grad();
    Tensor loss = mean(pow(head.forward(hidden2.forward(hidden1.forward(inputs))) - targets, 2.0));
    backward(loss);
    optimizer.step();
    last = loss.item();
    if (step == 1) first = last;
    if (step == 1 || step % 50 == 0) std::printf("step %3d: loss %.5f\n", step, last);
  }
  bool trained = last < 0.1 * first;
  std::printf("loss %.5f -> %.5f: %s\n", first, last, trained ? "trained" : "did NOT train");
  return ok && trained ? 0 : 1;
}

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "swish_layer: %s\n", e.what());
    return 1;
  }
}
