// bf16 mixed precision (core/autocast.h): inside AutocastScope(DType::bf16) every f32 product
// takes bf16-rounded inputs and accumulates in f32. On the CPU that is the f32 GEMM of rounded
// copies, so these tests check the same numerics a GPU run gets from cuBLAS's bf16 GEMM:
//  - a product equals, bit for bit, the f32 product of the inputs rounded by hand;
//  - layers and their gradients under the scope stay within a stated tolerance of f32, and do
//    differ from it (the scope is not a no-op);
//  - the scope nests and restores, f64 products are untouched, and a bad dtype is refused.
#include <cmath>

#include "core/autocast.h"
#include "kernels/gemm.h"
#include "nn/nn.h"
#include "test_util.h"

namespace kiln {
namespace {

// Each element rounded to the nearest bf16, kept in f32.
Tensor rounded(const Tensor& x) { return to(to(x, DType::bf16), DType::f32); }

using testing::relative_error;  // norm-wise: max |a - b| / max |b|

TEST(MixedPrecision, ProductIsTheF32ProductOfBf16RoundedInputs) {
  manual_seed(11);
  for (bool trans_b : {false, true}) {
    Tensor a = normal({2, 40, 64}, 0, 1), b = normal({64, 48}, 0, 1);
    Tensor bt = transpose(b, 0, 1);  // a copy: kiln has no strided views
    auto product = [&](const Tensor& x, const Tensor& y) {
      return trans_b ? matmul(x, transpose(y, 0, 1)) : matmul(x, y);
    };
    const Tensor& rhs = trans_b ? bt : b;
    Tensor plain = product(a, rhs);
    Tensor by_hand = product(rounded(a), rounded(rhs));
    Tensor mixed;
    {
      AutocastScope autocast(DType::bf16);
      mixed = product(a, rhs);
    }
    EXPECT_EQ(mixed.dtype(), DType::f32);
    EXPECT_EQ(mixed.to_vector<float>(), by_hand.to_vector<float>()) << "trans_b " << trans_b;
    // bf16 inputs carry 8 significant bits: each product's relative error is up to 2^-8, and a
    // sum of 64 random-sign terms keeps the error near 2^-8 of the largest.
    double error = relative_error(mixed, plain);
    EXPECT_GT(error, 1e-4) << "the scope changed nothing";
    EXPECT_LT(error, 1.5e-2);
  }
}

TEST(MixedPrecision, ScopeNestsRestoresAndLeavesF64Alone) {
  EXPECT_EQ(Autocast::gemm_inputs(), DType::f32);
  {
    AutocastScope outer(DType::bf16);
    EXPECT_EQ(Autocast::gemm_inputs(), DType::bf16);
    {
      AutocastScope inner(DType::f32);
      EXPECT_EQ(Autocast::gemm_inputs(), DType::f32);
    }
    EXPECT_EQ(Autocast::gemm_inputs(), DType::bf16);
    Tensor a = normal({5, 7}, 0, 1, DType::f64), b = normal({7, 3}, 0, 1, DType::f64);
    Tensor in_scope = matmul(a, b);
    AutocastScope off(DType::f32);
    EXPECT_EQ(in_scope.to_vector<double>(), matmul(a, b).to_vector<double>());
  }
  EXPECT_EQ(Autocast::gemm_inputs(), DType::f32);
  std::string error = testing::error_of([] { AutocastScope bad(DType::i64); });
  EXPECT_CONTAINS(error, "autocast: GEMM inputs must be f32 or bf16, got i64");
  EXPECT_EQ(Autocast::gemm_inputs(), DType::f32);
}

// A GRU or LSTM layer (input and recurrent products in the fused layer) and a Linear on top,
// forward and backward under the scope, against f32: outputs within 2e-2 and gradients within
// 5e-2 norm-wise, every one of them changed.
void check_layers_close_to_f32(nn::CellType cell) {
  manual_seed(12);
  nn::Recurrent rnn(cell, nn::RnnOptions{16, 32, 2});
  nn::Linear head(32, 10);
  Tensor x = normal({7, 4, 16}, 0, 1);
  auto run = [&](DType gemm_inputs) {
    AutocastScope autocast(gemm_inputs);
    rnn.zero_grad();
    head.zero_grad();
    Tensor logits = head.forward(rnn.forward(x).y);
    backward(sum(tanh(logits)));
    std::vector<Tensor> out{logits.detach()};
    for (const Tensor& p : rnn.parameters()) out.push_back(copy_to(p.grad(), {}));
    for (const Tensor& p : head.parameters()) out.push_back(copy_to(p.grad(), {}));
    return out;
  };
  std::vector<Tensor> full = run(DType::f32), mixed = run(DType::bf16);
  ASSERT_EQ(full.size(), mixed.size());
  for (size_t i = 0; i < full.size(); ++i) {
    double error = relative_error(mixed[i], full[i]);
    EXPECT_GT(error, 1e-5) << "tensor " << i << " did not change";
    EXPECT_LT(error, i == 0 ? 2e-2 : 5e-2) << "tensor " << i;
  }
}

TEST(MixedPrecision, GruLayerAndLinearStayNearF32) { check_layers_close_to_f32(nn::CellType::gru); }
TEST(MixedPrecision, LstmLayerAndLinearStayNearF32) {
  check_layers_close_to_f32(nn::CellType::lstm);
}

TEST(MixedPrecision, CudaProductMatchesCpu) {
  KILN_REQUIRE_GPU();
  manual_seed(13);
  Tensor a = normal({3, 50, 70}, 0, 1), b = normal({70, 30}, 0, 1);
  AutocastScope autocast(DType::bf16);
  Tensor cpu = matmul(a, b);
  Tensor gpu = matmul(to(a, Device::cuda()), to(b, Device::cuda()));
  // The same exact products of bf16 values, summed in f32 in another order.
  EXPECT_TRUE(testing::all_close(to(gpu, Device::cpu()), cpu, 1e-4, 1e-5));
}

}  // namespace
}  // namespace kiln
