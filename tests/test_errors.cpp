// Every kind of misuse gets a kiln::Error whose message names the op, the tensors and what was
// expected. Each test checks the message, not only the throw.
#include "test_util.h"

namespace kiln {
namespace {

using kiln::testing::error_of;

TEST(Errors, ShapeMismatch) {
  std::string msg = error_of([] { add(zeros({2, 3}), zeros({4})); });
  EXPECT_CONTAINS(msg, "add");
  EXPECT_CONTAINS(msg, "[2, 3]");
  EXPECT_CONTAINS(msg, "[4]");
  EXPECT_CONTAINS(msg, "cannot be broadcast");
  msg = error_of([] { matmul(zeros({2, 3}), zeros({4, 5})); });
  EXPECT_CONTAINS(msg, "matmul: inner dimensions differ");
  EXPECT_CONTAINS(msg, "f32[2, 3]");
  msg = error_of([] { cat({zeros({2, 3}), zeros({2, 4})}, 0); });
  EXPECT_CONTAINS(msg, "cat: tensor 1 is f32[2, 4]");
  msg = error_of([] { reshape(zeros({2, 3}), {4, 2}); });
  EXPECT_CONTAINS(msg, "reshape: cannot view f32[2, 3] on cpu as [4, 2]");
}

TEST(Errors, DtypeMismatch) {
  std::string msg = error_of([] { mul(zeros({2}), zeros({2}, DType::f64)); });
  EXPECT_CONTAINS(msg, "mul: dtype mismatch: f32[2] on cpu vs f64[2] on cpu");
  msg = error_of([] { tanh(zeros({2}, DType::i32)); });
  EXPECT_CONTAINS(msg, "tanh: expected a floating tensor");
  msg = error_of([] { zeros({2}).data<double>(); });
  EXPECT_CONTAINS(msg, "Tensor::data<f64>: tensor is f32[2] on cpu");
  msg = error_of([] { embedding(zeros({4, 2}), zeros({3})); });
  EXPECT_CONTAINS(msg, "embedding: index must be i32 or i64");
}

TEST(Errors, DeviceMismatch) {
  if (!testing::gpu_available()) {
    // Without a GPU the mismatch cannot be built; asking for the device is the error.
    std::string msg = error_of([] { zeros({2}, Device::cuda()); });
    EXPECT_CONTAINS(msg, "cuda:0 requested but");
    msg = error_of([] { Device::parse("gpu"); });
    EXPECT_CONTAINS(msg, "'gpu' is not a device");
    GTEST_SKIP() << "mismatch itself: " << testing::no_gpu_reason();
  }
  std::string msg = error_of([] { add(zeros({2}), zeros({2}, Device::cuda())); });
  EXPECT_CONTAINS(msg, "add: device mismatch: f32[2] on cpu vs f32[2] on cuda:0");
  msg = error_of([] { matmul(zeros({2, 2}, Device::cuda()), zeros({2, 2})); });
  EXPECT_CONTAINS(msg, "matmul: device mismatch");
}

TEST(Errors, IndexOutOfRange) {
  Tensor index = from_vector<int64_t>({0, 5, 7}, {3});
  std::string msg = error_of([&] { embedding(zeros({6, 2}), index); });
  EXPECT_CONTAINS(msg, "embedding: index 7 at position 2 is out of range for a table of 6 rows");
  msg = error_of([] { select(zeros({4, 3}), 4); });
  EXPECT_CONTAINS(msg, "select: index 4 is out of range for f32[4, 3]");
  msg = error_of([] { narrow(zeros({4, 3}), 2, 3); });
  EXPECT_CONTAINS(msg, "narrow: rows [2, 5) are out of range");
  msg = error_of([] { sum(zeros({4, 3}), 2); });
  EXPECT_CONTAINS(msg, "sum: dim 2 is out of range for a tensor of rank 2");
  msg = error_of([] { zeros({4}).size(1); });
  EXPECT_CONTAINS(msg, "Tensor::size: dim 1 is out of range");
}

TEST(Errors, WrongRank) {
  std::string msg = error_of([] { matmul(zeros({3}), zeros({3, 2})); });
  EXPECT_CONTAINS(msg, "matmul: expected 2-D x 2-D, 3-D x 3-D or 3-D x 2-D operands, got f32[3]");
  msg = error_of([] { softmax(scalar_tensor(1.0)); });
  EXPECT_CONTAINS(msg, "softmax: expected a non-empty tensor of rank >= 1");
  msg = error_of([] { max(zeros({2, 3}), 0); });
  EXPECT_CONTAINS(msg, "max: only the last dim is supported, got dim 0");
  msg = error_of([] { zeros({2, 3}).item(); });
  EXPECT_CONTAINS(msg, "item: expected a tensor with one element, got f32[2, 3]");
}

TEST(Errors, BackwardThroughAFreedGraph) {
  Tensor x = from_vector<double>({1.0, 2.0}, {2}).set_requires_grad(true);
  Tensor loss = sum(x * x);
  backward(loss);
  std::string msg = error_of([&] { backward(loss); });
  EXPECT_CONTAINS(msg, "has already been freed by an earlier backward()");
  EXPECT_CONTAINS(msg, "retain_graph=true");
}

TEST(Errors, BackwardOfSomethingThatNeedsNoGrad) {
  std::string msg = error_of([] { backward(sum(zeros({2}))); });
  EXPECT_CONTAINS(msg, "backward: f32[] on cpu does not require grad");
}

TEST(Errors, FromVectorSizeMismatch) {
  std::string msg = error_of([] { from_vector<float>({1, 2, 3}, {2, 2}); });
  EXPECT_CONTAINS(msg, "from_vector: 3 values do not fill shape [2, 2]");
}

}  // namespace
}  // namespace kiln
