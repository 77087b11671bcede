// The README's "write your own layer" example, compiled and tested: a highway layer
//   t = sigmoid(x W_t^T + b_t),  y = t * relu(x W_h^T + b_h) + (1 - t) * x
// built from kiln ops (so autograd comes for free), with its gradcheck.
#include "nn/nn.h"
#include "test_util.h"

namespace kiln {
namespace {

// The math as a free function of all its tensors: easy to gradcheck.
Tensor highway(const Tensor& x, const Tensor& w_h, const Tensor& b_h, const Tensor& w_t,
               const Tensor& b_t) {
  Tensor t = sigmoid(matmul(x, w_t, false, true) + b_t);
  return t * relu(matmul(x, w_h, false, true) + b_h) + (1.0 - t) * x;
}

class Highway : public nn::Module {
 public:
  Highway(int64_t size, Options options = {}) {
    double bound = 1.0 / std::sqrt(static_cast<double>(size));
    w_h = register_parameter("w_h", uniform({size, size}, -bound, bound, options));
    b_h = register_parameter("b_h", zeros({size}, options));
    w_t = register_parameter("w_t", uniform({size, size}, -bound, bound, options));
    b_t = register_parameter("b_t", full({size}, -1.0, options));  // start by carrying x through
  }
  Tensor forward(const Tensor& x) const { return highway(x, w_h, b_h, w_t, b_t); }

  Tensor w_h, b_h, w_t, b_t;
};

TEST(CustomLayer, HighwayGradcheck) {
  manual_seed(8);
  Highway layer(3, DType::f64);
  Tensor x = uniform({4, 3}, -1, 1, DType::f64);
  auto f = [](const std::vector<Tensor>& in) { return highway(in[0], in[1], in[2], in[3], in[4]); };
  GradcheckResult result = gradcheck(
      f, {x, layer.w_h.detach(), layer.b_h.detach(), layer.w_t.detach(), layer.b_t.detach()});
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(CustomLayer, HighwayTrainsInsideAModel) {
  manual_seed(9);
  Highway layer(8);
  nn::Adam opt(layer.parameters(), nn::AdamOptions{0.05});
  Tensor x = uniform({32, 8}, -1, 1), target = tanh(x * 2.0);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    opt.zero_grad();
    Tensor loss = mean(pow(layer.forward(x) - target, 2.0));
    backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.3 * first) << first << " -> " << last;
  EXPECT_EQ(layer.state_dict().size(), 4u);
}

}  // namespace
}  // namespace kiln
