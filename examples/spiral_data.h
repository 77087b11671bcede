// The classic three-arm spiral: a small classification task a linear model cannot solve, used by
// the MLP demo and its end-to-end test. Deterministic for a seed (Philox).
#pragma once

#include <cmath>
#include <vector>

#include "kiln.h"

namespace kiln::examples {

struct SpiralData {
  Tensor points;   // [N, 2] f32
  Tensor one_hot;  // [N, classes] f32
  Tensor labels;   // [N] i64
};

inline SpiralData make_spiral(int64_t per_class, int64_t classes, uint64_t seed) {
  manual_seed(seed);
  std::vector<double> noise =
      normal({per_class * classes}, 0.0, 0.2, DType::f64).to_vector<double>();
  std::vector<float> points, one_hot(per_class * classes * classes, 0.0f);
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < classes; ++c) {
    for (int64_t i = 0; i < per_class; ++i) {
      int64_t n = c * per_class + i;
      double radius = static_cast<double>(i) / per_class;
      double angle = 4.0 * (c + radius) + noise[n];
      points.push_back(static_cast<float>(radius * std::sin(angle)));
      points.push_back(static_cast<float>(radius * std::cos(angle)));
      one_hot[n * classes + c] = 1.0f;
      labels.push_back(c);
    }
  }
  int64_t total = per_class * classes;
  return {from_vector(points, {total, 2}), from_vector(one_hot, {total, classes}),
          from_vector(labels, {total})};
}

// A 2-layer MLP, written with plain ops: logits = relu(x W1 + b1) W2 + b2.
struct Mlp {
  Tensor w1, b1, w2, b2;

  Mlp(int64_t in, int64_t hidden, int64_t out, Device device) {
    double bound1 = 1.0 / std::sqrt(static_cast<double>(in)),
           bound2 = 1.0 / std::sqrt(static_cast<double>(hidden));
    w1 = uniform({in, hidden}, -bound1, bound1, device).set_requires_grad(true);
    b1 = zeros({hidden}, device).set_requires_grad(true);
    w2 = uniform({hidden, out}, -bound2, bound2, device).set_requires_grad(true);
    b2 = zeros({out}, device).set_requires_grad(true);
  }
  std::vector<Tensor> parameters() const { return {w1, b1, w2, b2}; }
  Tensor forward(const Tensor& x) const { return matmul(relu(matmul(x, w1) + b1), w2) + b2; }
};

// Mean cross-entropy of logits [N, C] against one-hot targets [N, C].
inline Tensor cross_entropy(const Tensor& logits, const Tensor& one_hot) {
  return -mean(sum(log_softmax(logits) * one_hot, 1));
}

inline void sgd_step(const std::vector<Tensor>& parameters, double lr) {
  NoGradGuard no_grad;
  for (Tensor p : parameters) {
    add_(p, p.grad(), -lr);
    zero_(p.grad());
  }
}

}  // namespace kiln::examples
