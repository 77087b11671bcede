// Philox: same seed, same numbers; CPU and CUDA streams equal; sane moments.
#include <cmath>

#include "test_util.h"

namespace kiln {
namespace {

TEST(Random, SameSeedSameNumbers) {
  manual_seed(42);
  std::vector<float> a = uniform({1000}, -1, 1).to_vector<float>();
  manual_seed(42);
  std::vector<float> b = uniform({1000}, -1, 1).to_vector<float>();
  EXPECT_EQ(a, b);
  std::vector<float> c = uniform({1000}, -1, 1).to_vector<float>();  // the stream moved on
  EXPECT_NE(a, c);
  manual_seed(43);
  EXPECT_NE(a, uniform({1000}, -1, 1).to_vector<float>());
}

TEST(Random, ADrawSplitInTwoEqualsOneDraw) {
  // Element i depends only on (seed, offset + i).
  manual_seed(7);
  std::vector<double> whole = uniform({10}, 0, 1, DType::f64).to_vector<double>();
  manual_seed(7);
  std::vector<double> first = uniform({4}, 0, 1, DType::f64).to_vector<double>();
  std::vector<double> second = uniform({6}, 0, 1, DType::f64).to_vector<double>();
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(whole, first);
}

TEST(Random, UniformAndNormalMoments) {
  manual_seed(1);
  std::vector<double> u = uniform({200000}, 2.0, 4.0, DType::f64).to_vector<double>();
  double mean = 0, lo = 1e9, hi = -1e9;
  for (double v : u) {
    mean += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  mean /= u.size();
  EXPECT_NEAR(mean, 3.0, 0.01);
  EXPECT_GE(lo, 2.0);
  EXPECT_LT(hi, 4.0);
  std::vector<double> n = normal({200000}, 1.0, 2.0, DType::f64).to_vector<double>();
  double m = 0, var = 0;
  for (double v : n) m += v;
  m /= n.size();
  for (double v : n) var += (v - m) * (v - m);
  var /= n.size();
  EXPECT_NEAR(m, 1.0, 0.02);
  EXPECT_NEAR(std::sqrt(var), 2.0, 0.02);
}

TEST(Random, CudaStreamEqualsCpuStream) {
  KILN_REQUIRE_GPU();
  manual_seed(5);
  Tensor cpu_u = uniform({4097}, -3, 3), cpu_n = normal({4097}, 0, 1, DType::f64);
  manual_seed(5);
  Tensor gpu_u = uniform({4097}, -3, 3, Device::cuda()),
         gpu_n = normal({4097}, 0, 1, {DType::f64, Device::cuda()});
  EXPECT_EQ(gpu_u.to_vector<float>(), cpu_u.to_vector<float>());
  // Box-Muller goes through log/cos, whose last bit may differ between libm and CUDA's.
  EXPECT_TRUE(testing::all_close(gpu_n, cpu_n, 1e-12, 1e-12));
}

}  // namespace
}  // namespace kiln
