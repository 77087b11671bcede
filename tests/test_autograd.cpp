// The tape: accumulation, multi-output nodes, NoGradGuard, detach, freeing saved tensors, deep
// graphs without recursion, and a user-written fused op through parallel_for.
#include "kernels/parallel_for.h"
#include "test_util.h"

namespace kiln {
namespace {

Tensor vec(std::vector<double> values) {
  int64_t n = static_cast<int64_t>(values.size());
  return from_vector(values, {n});
}

TEST(Autograd, GradientOfATensorUsedTwiceAccumulates) {
  Tensor x = vec({1.0, 2.0, 3.0}).set_requires_grad(true);
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  backward(y);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3.0, 5.0, 7.0}));
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = vec({1.0, -2.0}).set_requires_grad(true);
  backward(sum(x * 3.0));
  backward(sum(x * 3.0));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6.0, 6.0}));
}

// An op whose backward returns `grad` for its input and keeps a handle on it when `keep` is set.
Tensor pass_gradient(const Tensor& x, Tensor grad, bool keep, const void** returned) {
  Tensor y = empty(x.shape(), x.options());
  {
    NoGradGuard guard;
    copy_(y, x);
  }
  autograd::record("pass_gradient", {x}, {y}, [grad, keep, returned](const autograd::TensorList&) {
    Tensor out = keep ? grad : clone(grad);
    *returned = out.raw_data();
    return autograd::TensorList{out};
  });
  return y;
}

// A leaf without a gradient takes the tensor backward hands it when nothing else holds that
// tensor (no copy), and a copy when something does: here the op's own handle.
TEST(Autograd, ALeafTakesItsFirstGradientWithoutACopyWhenNothingElseHoldsIt) {
  for (bool keep : {false, true}) {
    Tensor x = vec({1.0, 2.0}).set_requires_grad(true);
    const void* returned = nullptr;
    backward(sum(pass_gradient(x, vec({3.0, 4.0}), keep, &returned)));
    ASSERT_NE(returned, nullptr);
    EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3.0, 4.0}));
    EXPECT_EQ(x.grad().raw_data() == returned, !keep) << "keep " << keep;
  }
}

// add's backward hands one gradient tensor to both inputs: the leaves must not share it.
TEST(Autograd, LeavesNeverShareTheGradientOneBackwardGaveBoth) {
  Tensor x = vec({1.0, 2.0}).set_requires_grad(true);
  Tensor y = vec({3.0, 4.0}).set_requires_grad(true);
  backward(sum(x + y));
  EXPECT_NE(x.grad().raw_data(), y.grad().raw_data());
  zero_(x.grad());
  EXPECT_EQ(y.grad().to_vector<double>(), (std::vector<double>{1.0, 1.0}));
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = vec({1.0, 2.0}).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard guard;
    y = x * 2.0;
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
  Tensor z = x * 2.0;
  EXPECT_TRUE(z.requires_grad());
}

TEST(Autograd, DetachCutsTheGraph) {
  Tensor x = vec({1.0, 2.0}).set_requires_grad(true);
  Tensor y = x * 2.0;
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw_data(), y.raw_data());  // same storage
  Tensor loss = sum(d * x);               // gradient flows to x only through the second factor
  backward(loss);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, 4.0}));
}

TEST(Autograd, BackwardFreesSavedTensorsUnlessRetained) {
  Tensor x = vec({0.5, 1.5}).set_requires_grad(true);
  Tensor y = tanh(x);
  Tensor loss = sum(y);
  EXPECT_TRUE(static_cast<bool>(y.grad_fn()->backward_fn));
  // tanh saved its output: the storage has an extra owner until backward runs.
  long owners_before = y.impl().storage.use_count();
  backward(loss, Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(y.impl().storage.use_count(), owners_before);
  backward(loss);
  EXPECT_FALSE(static_cast<bool>(y.grad_fn()->backward_fn));
  EXPECT_TRUE(y.grad_fn()->released);
  EXPECT_EQ(y.impl().storage.use_count(), owners_before - 1);
}

TEST(Autograd, NodesWithSeveralOutputs) {
  // A user op with two outputs from one node: (a, b) = (2x, x^2).
  Tensor x = vec({1.0, 3.0}).set_requires_grad(true);
  Tensor a = empty(x.shape(), x.options()), b = empty(x.shape(), x.options());
  {
    std::vector<double> xs = x.to_vector<double>();
    copy_(a, vec({2 * xs[0], 2 * xs[1]}));
    copy_(b, vec({xs[0] * xs[0], xs[1] * xs[1]}));
  }
  Tensor saved = x.detach();
  autograd::record("two_outputs", {x}, {a, b}, [saved](const autograd::TensorList& g) {
    return autograd::TensorList{g[0] * 2.0 + g[1] * saved * 2.0};
  });
  // Only b is used: a's gradient arrives as zeros.
  backward(sum(b));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, 6.0}));
  x.set_grad(Tensor());
  EXPECT_THROW(backward(sum(a + b)), Error);  // the node was freed by the first backward
}

TEST(Autograd, DeepChainRunsWithoutRecursion) {
  // 20k nodes: a recursive walk would overflow the stack; the tape loop does not.
  Tensor x = vec({1.0}).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  backward(sum(y));
  EXPECT_EQ(x.grad().item(), 1.0);
}

TEST(Autograd, NonScalarBackwardNeedsAnExplicitGradient) {
  Tensor x = vec({1.0, 2.0}).set_requires_grad(true);
  Tensor y = x * 3.0;
  EXPECT_THROW(backward(y), Error);
  backward(y, vec({1.0, 10.0}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3.0, 30.0}));
}

TEST(Autograd, InPlaceUpdateOfALeafNeedsNoGrad) {
  Tensor w = vec({1.0, 2.0}).set_requires_grad(true);
  EXPECT_THROW(add_(w, vec({1.0, 1.0})), Error);
  NoGradGuard guard;
  add_(w, vec({1.0, 1.0}), -0.5);
  EXPECT_EQ(w.to_vector<double>(), (std::vector<double>{0.5, 1.5}));
}

// A user's fused op, written the kiln way: one KILN_HD functor, launched by parallel_for.
struct SquarePlusOne {
  const double* x;
  double* y;
  KILN_HD void operator()(int64_t i) const { y[i] = x[i] * x[i] + 1.0; }
};

TEST(Autograd, UserFunctorThroughParallelFor) {
  Tensor x = arange(0.0, 100000.0, 1.0, DType::f64);
  Tensor y = empty(x.shape(), x.options());
  parallel_for(x.device(), x.numel(), SquarePlusOne{x.data<double>(), y.data<double>()});
  std::vector<double> out = y.to_vector<double>();
  EXPECT_EQ(out[0], 1.0);
  EXPECT_EQ(out[99999], 99999.0 * 99999.0 + 1.0);
}

TEST(Gradcheck, ReportsTheWorstElementOfAWrongGradient) {
  // A deliberately wrong backward: claims d(x^2)/dx = x.
  auto wrong_square = [](const std::vector<Tensor>& in) {
    Tensor y = empty(in[0].shape(), in[0].options());
    {
      NoGradGuard guard;
      copy_(y, in[0] * in[0]);
    }
    if (autograd::needs_grad({in[0]})) {
      Tensor saved = in[0].detach();
      autograd::record("wrong_square", {in[0]}, {y}, [saved](const autograd::TensorList& g) {
        return autograd::TensorList{g[0] * saved};
      });
    }
    return y;
  };
  GradcheckResult result = gradcheck(wrong_square, {vec({1.0, 2.0, 3.0})});
  EXPECT_FALSE(result.ok);
  EXPECT_NE(result.message.find("analytic 3"), std::string::npos) << result.message;
  EXPECT_NE(result.message.find("numeric 6"), std::string::npos) << result.message;
}

}  // namespace
}  // namespace kiln
