// Tensors: factories, views, copies between dtypes and devices, printing.
#include <sstream>

#include "test_util.h"

namespace kiln {
namespace {

TEST(Tensor, Factories) {
  EXPECT_EQ(zeros({2, 3}).to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(ones({4}, DType::f64).to_vector<double>(), std::vector<double>(4, 1.0));
  EXPECT_EQ(full({2}, 7.0, DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{7, 7}));
  EXPECT_EQ(arange(4, DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(arange(1.0, 2.0, 0.25, DType::f64).to_vector<double>(),
            (std::vector<double>{1, 1.25, 1.5, 1.75}));
  Tensor s = scalar_tensor(2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 2.5);
  Tensor e = empty({0, 3});
  EXPECT_EQ(e.numel(), 0);
}

TEST(Tensor, ShapeQueries) {
  Tensor t = zeros({2, 3, 4}, DType::f64);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 24u * 8u);
  EXPECT_EQ(t.describe(), "f64[2, 3, 4] on cpu");
}

TEST(Tensor, RowViewsShareStorage) {
  Tensor t = arange(0.0, 12.0, 1.0, DType::f64);
  Tensor m = reshape(t, {4, 3});
  Tensor rows = narrow(m, 1, 2);
  EXPECT_EQ(rows.shape(), (Shape{2, 3}));
  EXPECT_EQ(rows.to_vector<double>(), (std::vector<double>{3, 4, 5, 6, 7, 8}));
  Tensor row = select(m, 3);
  EXPECT_EQ(row.to_vector<double>(), (std::vector<double>{9, 10, 11}));
  fill_(rows, -1);  // writes through to the parent
  EXPECT_EQ(m.to_vector<double>()[3], -1);
  EXPECT_EQ(m.to_vector<double>()[9], 9);
}

TEST(Tensor, DtypeConversions) {
  Tensor x = from_vector<double>({1.7, -2.2, 3.0}, {3});
  EXPECT_EQ(to(x, DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3}));
  EXPECT_EQ(to(x, DType::f32).to_vector<float>(), (std::vector<float>{1.7f, -2.2f, 3.0f}));
  Tensor x_grad = x.detach().set_requires_grad(true);
  backward(sum(to(x_grad, DType::f32) * 2.0));
  EXPECT_EQ(x_grad.grad().dtype(), DType::f64);
  EXPECT_EQ(x_grad.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
}

TEST(Tensor, DeviceRoundTrip) {
  KILN_REQUIRE_GPU();
  Tensor x = uniform({3, 5}, -1, 1);
  Tensor y = to(x, Device::cuda());
  EXPECT_EQ(y.device(), Device::cuda());
  EXPECT_EQ(to(y, Device::cpu()).to_vector<float>(), x.to_vector<float>());
  Tensor leaf = x.detach().set_requires_grad(true);
  backward(sum(to(leaf, Device::cuda()) * 3.0));
  EXPECT_EQ(leaf.grad().device(), Device::cpu());
  EXPECT_EQ(leaf.grad().to_vector<float>(), std::vector<float>(15, 3.0f));
}

TEST(Tensor, PrintIsReadable) {
  std::ostringstream out;
  out << from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(out.str(), "tensor([[1, 2, 3],\n [4, 5, 6]], shape=[2, 3], dtype=f32, device=cpu)");
  std::ostringstream long_out;
  long_out << arange(100, DType::i64);
  EXPECT_NE(long_out.str().find("[0, 1, 2, ..., 97, 98, 99]"), std::string::npos) << long_out.str();
}

TEST(Tensor, InPlaceUpdates) {
  Tensor y = ones({3}, DType::f64);
  mul_(add_(y, from_vector<double>({1, 2, 3}, {3}), 2.0), 0.5);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{1.5, 2.5, 3.5}));
  zero_(y);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{0, 0, 0}));
}

TEST(Tensor, DeviceParse) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda:1").index, 1);
  EXPECT_THROW(Device::parse("cuda:x"), Error);
}

}  // namespace
}  // namespace kiln
