// Trains a 2-layer MLP on the three-arm spiral with plain SGD and prints the loss falling.
// Usage: mlp_demo [cpu|cuda]
#include <chrono>
#include <cstdio>

#include "spiral_data.h"

int main(int argc, char** argv) {
  using namespace kiln;
  try {
    Device device = argc > 1 ? Device::parse(argv[1]) : Device::cpu();
    examples::SpiralData data = examples::make_spiral(100, 3, /*seed=*/3);
    Tensor points = to(data.points, device), one_hot = to(data.one_hot, device);
    examples::Mlp model(2, 64, 3, device);
    std::printf("kiln MLP demo: 300 spiral points, 3 classes, hidden 64, SGD lr 1.0, on %s\n",
                device.str().c_str());
    auto start = std::chrono::steady_clock::now();
    for (int step = 0; step <= 1500; ++step) {
      Tensor loss = examples::cross_entropy(model.forward(points), one_hot);
      backward(loss);
      examples::sgd_step(model.parameters(), 1.0);
      if (step % 150 == 0) std::printf("step %4d  loss %.4f\n", step, loss.item());
    }
    NoGradGuard no_grad;
    std::vector<int64_t> predicted =
        to(argmax(model.forward(points)), Device::cpu()).to_vector<int64_t>();
    std::vector<int64_t> labels = data.labels.to_vector<int64_t>();
    int correct = 0;
    for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("train accuracy %d/300 (%.1f%%) in %.2f s\n", correct, 100.0 * correct / 300,
                seconds);
    std::printf("%s\n", memory_summary(device).c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "mlp_demo: %s\n", e.what());
    return 1;
  }
}
