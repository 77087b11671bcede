// The fused Bahdanau attention op (autograd/ops/attention.cpp) beside the taped composition the
// decoder used before it: the same outputs and gradients on random padded inputs, uniform weights
// for a fully padded sentence, argument errors that name the argument, and CUDA vs the CPU at a
// model's sizes (block strides exercised). Gradcheck and the small CUDA check: tests/test_ops.cpp.
#include "test_util.h"

namespace kiln {
namespace {

// The ~10 taped ops of AttentionLayer::forward before the fused op (v as w_v's [A] weight).
std::pair<Tensor, Tensor> taped_bahdanau(const Tensor& key_proj, const Tensor& query_proj,
                                         const Tensor& v, const Tensor& keys, const Tensor& pad) {
  int64_t batch = keys.size(0), src_len = keys.size(1);
  Tensor q = reshape(query_proj, {batch, 1, -1});
  Tensor scores = reshape(matmul(tanh(key_proj + q), reshape(v, {-1, 1})), {batch, src_len});
  Tensor weights = softmax(masked_fill(scores, pad, -1e9));
  Tensor context = reshape(matmul(reshape(weights, {batch, 1, src_len}), keys), {batch, -1});
  return {context, weights};
}

// [B, S] padding (1 past each length) in `options`.
Tensor pad_for(const std::vector<int64_t>& lengths, int64_t src_len, Options options) {
  std::vector<double> pad;
  for (int64_t length : lengths) {
    for (int64_t s = 0; s < src_len; ++s) pad.push_back(s < length ? 0.0 : 1.0);
  }
  return to(to(from_vector(pad, {static_cast<int64_t>(lengths.size()), src_len}), options.dtype),
            options.device);
}

struct AttentionInputs {
  Tensor key_proj, query_proj, v, keys, pad;
  std::vector<Tensor> grad_inputs() const { return {key_proj, query_proj, v, keys}; }
};

AttentionInputs random_inputs(int64_t S, int64_t A, int64_t Hk, const std::vector<int64_t>& lengths,
                              Options options) {
  const int64_t B = static_cast<int64_t>(lengths.size());
  AttentionInputs in{uniform({B, S, A}, -1.5, 1.5, options), uniform({B, A}, -1.5, 1.5, options),
                     uniform({A}, -1, 1, options), uniform({B, S, Hk}, -1, 1, options),
                     pad_for(lengths, S, options)};
  for (Tensor* t : {&in.key_proj, &in.query_proj, &in.v, &in.keys}) t->set_requires_grad(true);
  return in;
}

TEST(BahdanauAttention, MatchesTapedCompositionForwardAndGradients) {
  manual_seed(21);
  // Lengths 5, 3, 1 and 0: unpadded, padded, a single real key, a fully padded sentence.
  AttentionInputs fused = random_inputs(5, 6, 7, {5, 3, 1, 0}, DType::f64);
  AttentionInputs taped{fused.key_proj.detach(), fused.query_proj.detach(), fused.v.detach(),
                        fused.keys.detach(), fused.pad};
  for (Tensor* t : {&taped.key_proj, &taped.query_proj, &taped.v, &taped.keys}) {
    t->set_requires_grad(true);
  }
  auto [context, weights] =
      bahdanau_attention(fused.key_proj, fused.query_proj, fused.v, fused.keys, fused.pad);
  auto [ref_context, ref_weights] =
      taped_bahdanau(taped.key_proj, taped.query_proj, taped.v, taped.keys, taped.pad);
  EXPECT_TRUE(testing::all_close(context, ref_context, 1e-13, 1e-12));
  EXPECT_TRUE(testing::all_close(weights, ref_weights, 1e-13, 1e-12));

  // A loss that reaches both outputs with random weights.
  Tensor grad_context = uniform(context.shape(), -1, 1, DType::f64);
  Tensor grad_weights = uniform(weights.shape(), -1, 1, DType::f64);
  backward(sum(context * grad_context) + sum(weights * grad_weights));
  backward(sum(ref_context * grad_context) + sum(ref_weights * grad_weights));
  const char* names[] = {"key_proj", "query_proj", "v", "keys"};
  std::vector<Tensor> got = fused.grad_inputs(), want = taped.grad_inputs();
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_TRUE(got[k].grad().defined()) << names[k];
    EXPECT_TRUE(testing::all_close(got[k].grad(), want[k].grad(), 1e-12, 1e-10)) << names[k];
  }
}

TEST(BahdanauAttention, F32MatchesTapedComposition) {
  manual_seed(22);
  AttentionInputs in = random_inputs(12, 32, 24, {12, 7, 0}, DType::f32);
  auto [context, weights] = bahdanau_attention(in.key_proj, in.query_proj, in.v, in.keys, in.pad);
  auto [ref_context, ref_weights] =
      taped_bahdanau(in.key_proj, in.query_proj, in.v, in.keys, in.pad);
  EXPECT_TRUE(testing::all_close(context, ref_context, 1e-5, 1e-4));
  EXPECT_TRUE(testing::all_close(weights, ref_weights, 1e-5, 1e-4));
}

TEST(BahdanauAttention, FullyPaddedSentenceGetsUniformWeights) {
  manual_seed(23);
  for (DType dtype : {DType::f32, DType::f64}) {
    AttentionInputs in = random_inputs(4, 3, 2, {0, 2}, dtype);
    auto [context, weights] = bahdanau_attention(in.key_proj, in.query_proj, in.v, in.keys, in.pad);
    std::vector<double> w = to(weights, DType::f64).to_vector<double>();
    for (int64_t s = 0; s < 4; ++s) EXPECT_DOUBLE_EQ(w[s], 0.25) << dtype_name(dtype);
    // A padded key of a real sentence gets nothing (f32's exp flushes near its smallest normal).
    EXPECT_LT(w[4 + 2], 1e-37) << dtype_name(dtype);
    backward(sum(context) + sum(weights * weights));
    for (const Tensor& t : in.grad_inputs()) {
      EXPECT_TRUE(std::isfinite(sum(t.grad()).item())) << dtype_name(dtype);
    }
  }
}

TEST(BahdanauAttention, BadArgumentsNameTheArgument) {
  AttentionInputs in = random_inputs(4, 3, 2, {4, 2}, DType::f32);
  auto call = [&](const Tensor& kp, const Tensor& q, const Tensor& v, const Tensor& keys,
                  const Tensor& pad) {
    return testing::error_of([&] { bahdanau_attention(kp, q, v, keys, pad); });
  };
  const Tensor& kp = in.key_proj;
  EXPECT_NE(call(reshape(kp, {2, -1}), in.query_proj, in.v, in.keys, in.pad).find("key_proj"),
            std::string::npos);
  EXPECT_NE(call(kp, zeros({2, 4}), in.v, in.keys, in.pad).find("query_proj must be [B, A]"),
            std::string::npos);
  EXPECT_NE(call(kp, in.query_proj, zeros({1, 3}), in.keys, in.pad).find("v must be [A]"),
            std::string::npos);
  EXPECT_NE(call(kp, in.query_proj, in.v, zeros({2, 5, 2}), in.pad).find("keys must be"),
            std::string::npos);
  EXPECT_NE(call(kp, in.query_proj, in.v, in.keys, zeros({2, 3})).find("source_pad must be"),
            std::string::npos);
  EXPECT_NE(call(kp, in.query_proj, in.v, in.keys, to(in.pad, DType::f64)).find("source_pad"),
            std::string::npos);
  EXPECT_NE(call(kp, in.query_proj, in.v, in.keys, Tensor()).find("source_pad"), std::string::npos);
  EXPECT_NE(
      call(zeros({2, 0, 3}), zeros({2, 3}), in.v, zeros({2, 0, 2}), zeros({2, 0})).find("S >= 1"),
      std::string::npos);
}

// CUDA's block-per-sentence kernels vs the CPU at a decoder's sizes: S and A beyond one pass of
// the block's threads, every output and gradient, f32 and f64.
TEST(BahdanauAttention, CudaMatchesCpuAtModelSizes) {
  KILN_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    manual_seed(24);
    AttentionInputs cpu = random_inputs(140, 200, 300, {140, 77, 1, 0, 139}, dtype);
    AttentionInputs gpu{to(cpu.key_proj.detach(), Device::cuda()),
                        to(cpu.query_proj.detach(), Device::cuda()),
                        to(cpu.v.detach(), Device::cuda()), to(cpu.keys.detach(), Device::cuda()),
                        to(cpu.pad, Device::cuda())};
    for (Tensor* t : {&gpu.key_proj, &gpu.query_proj, &gpu.v, &gpu.keys})
      t->set_requires_grad(true);
    auto [c_cpu, w_cpu] =
        bahdanau_attention(cpu.key_proj, cpu.query_proj, cpu.v, cpu.keys, cpu.pad);
    auto [c_gpu, w_gpu] =
        bahdanau_attention(gpu.key_proj, gpu.query_proj, gpu.v, gpu.keys, gpu.pad);
    // f32: host and device tanh/exp differ by an ulp or two and the sums run in other orders.
    const double atol = dtype == DType::f32 ? 1e-4 : 1e-10,
                 rtol = dtype == DType::f32 ? 1e-3 : 1e-9;
    EXPECT_TRUE(testing::all_close(c_gpu, c_cpu, atol, rtol)) << dtype_name(dtype);
    EXPECT_TRUE(testing::all_close(w_gpu, w_cpu, atol, rtol)) << dtype_name(dtype);
    Tensor gc = uniform(c_cpu.shape(), -1, 1, dtype), gw = uniform(w_cpu.shape(), -1, 1, dtype);
    backward(sum(c_cpu * gc) + sum(w_cpu * gw));
    backward(sum(c_gpu * to(gc, Device::cuda())) + sum(w_gpu * to(gw, Device::cuda())));
    std::vector<Tensor> got = gpu.grad_inputs(), want = cpu.grad_inputs();
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_TRUE(testing::all_close(got[k].grad(), want[k].grad(), atol, rtol))
          << dtype_name(dtype) << " gradient of input " << k;
    }
  }
}

}  // namespace
}  // namespace kiln
