// End to end: a 2-layer MLP trained with plain SGD on the spiral task must get its loss from
// ln(3) ~ 1.10 down below 0.25 and classify > 90% of the points.
#include "spiral_data.h"
#include "test_util.h"

namespace kiln {
namespace {

TEST(EndToEnd, MlpLearnsTheSpiral) {
  examples::SpiralData data = examples::make_spiral(100, 3, /*seed=*/3);
  examples::Mlp model(2, 64, 3, Device::cpu());
  double first = 0, last = 0;
  for (int step = 0; step < 1500; ++step) {
    Tensor loss = examples::cross_entropy(model.forward(data.points), data.one_hot);
    backward(loss);
    examples::sgd_step(model.parameters(), 1.0);
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  EXPECT_GT(first, 1.0);
  EXPECT_LT(last, 0.25) << "loss went from " << first << " to " << last;
  NoGradGuard no_grad;
  std::vector<int64_t> predicted = argmax(model.forward(data.points)).to_vector<int64_t>();
  std::vector<int64_t> labels = data.labels.to_vector<int64_t>();
  int correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  EXPECT_GT(correct, 270) << correct << " of 300 correct";
}

}  // namespace
}  // namespace kiln
