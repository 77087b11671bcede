// Tensors: factories, views, copies between dtypes and devices, printing.
#include <cmath>
#include <cstring>
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

// ---- bf16 ----

uint32_t f32_bits(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  return u;
}
float f32_of_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Round to nearest, ties to even, worked out by hand on the bits: a bf16 keeps the top 16 bits of
// the f32, so the dropped half is 0x8000 at a tie.
TEST(BFloat16, RoundsToNearestEvenAtTheBoundaries) {
  struct Case {
    uint32_t f32;
    uint16_t bf16;
    const char* why;
  };
  const Case cases[] = {
      {0x3F800000, 0x3F80, "1 is exact"},
      {0x3F808000, 0x3F80, "1 + 2^-8: a tie, down to the even 0x3F80"},
      {0x3F808001, 0x3F81, "just above the tie: up"},
      {0x3F817FFF, 0x3F81, "just below the next tie: down"},
      {0x3F818000, 0x3F82, "a tie above the odd 0x3F81: up to the even 0x3F82"},
      {0xBF818000, 0xBF82, "the same, negative"},
      {0x7F7F7FFF, 0x7F7F, "just below the tie above the largest finite bf16"},
      {0x7F7F8000, 0x7F80, "the tie above the largest finite bf16 (odd): infinity"},
      {0x7F7FFFFF, 0x7F80, "the largest f32 rounds past the largest bf16: infinity"},
      {0x00000001, 0x0000, "the smallest denormal: zero"},
      {0x00008000, 0x0000, "a denormal tie, to the even zero"},
      {0x00018000, 0x0002, "a denormal tie above an odd: up"},
      {0x80000000, 0x8000, "-0 keeps its sign"},
      {0x7F800000, 0x7F80, "infinity"},
      {0xFF800000, 0xFF80, "-infinity"},
      {0x7FC00000, 0x7FC0, "quiet NaN"},
      {0x7F800001, 0x7FC0, "a NaN whose payload is in the dropped bits stays a NaN"},
      {0xFFC00000, 0xFFC0, "negative NaN"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(bf16(f32_of_bits(c.f32)).bits, c.bf16) << std::hex << c.f32 << ": " << c.why;
    if ((c.bf16 & 0x7FFF) <= 0x7F80) {  // back to f32 exactly (NaN compared apart)
      EXPECT_EQ(f32_bits(float(bf16::from_bits(c.bf16))), uint32_t(c.bf16) << 16) << c.why;
    }
  }
  EXPECT_TRUE(std::isnan(float(bf16(f32_of_bits(0x7F800001)))));
  // Every bf16 is an f32: all 65,536 bit patterns go there and back unchanged (but NaNs, which
  // stay NaNs).
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    float value = bf16::from_bits(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(bf16(value).bits, bits) << std::hex << bits;
  }
}

TEST(BFloat16, TensorsCastCopyPrintAndRefuseArithmetic) {
  Tensor x = from_vector<float>(
      {1.0f, f32_of_bits(0x3F808000), f32_of_bits(0x3F818000), -2.5f, 1e-3f, 65504.0f}, {2, 3});
  Tensor b = to(x, DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  EXPECT_EQ(b.nbytes(), 12u);
  std::vector<bf16> raw = b.to_vector<bf16>();
  EXPECT_EQ(raw[1].bits, 0x3F80);
  EXPECT_EQ(raw[2].bits, 0x3F82);
  std::vector<float> back = to(b, DType::f32).to_vector<float>();
  EXPECT_EQ(back[3], -2.5f);
  EXPECT_EQ(back[4], float(bf16(1e-3f)));
  EXPECT_NEAR(back[4], 1e-3, 1e-3 / 256);  // 8 significant bits
  EXPECT_EQ(back[5], 65536.0f);            // 65504 rounds to 2^16 (a tie above an odd mantissa)
  // Casts from every dtype, views and copies keep the bits.
  EXPECT_EQ(to(to(b, DType::f64), DType::bf16).to_vector<bf16>()[2].bits, 0x3F82);
  EXPECT_EQ(to(from_vector<int64_t>({3, -7}, {2}), DType::bf16).to_vector<bf16>()[1].bits,
            bf16(-7.0f).bits);
  Tensor column = transpose(b, 0, 1);
  EXPECT_EQ(column.to_vector<bf16>()[1].bits, raw[3].bits);
  EXPECT_EQ(full({2}, 0.1, DType::bf16).to_vector<bf16>()[0].bits, bf16(0.1f).bits);
  EXPECT_FLOAT_EQ(select(reshape(b, {6}), 3).item(), -2.5);
  std::ostringstream out;
  out << reshape(narrow(reshape(b, {6}), 0, 3), {3});
  EXPECT_EQ(out.str(), "tensor([1, 1, 1.01562], shape=[3], dtype=bf16, device=cpu)");
  // Arithmetic is for f32 and f64; a bf16 tensor gets a message, not garbage.
  try {
    tanh(b);
    ADD_FAILURE() << "tanh of a bf16 tensor did not throw";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "bf16");
  }
}

TEST(BFloat16, CudaCastsMatchCpu) {
  KILN_REQUIRE_GPU();
  manual_seed(9);
  Tensor x = mul(uniform({1000}, -1, 1), 1000.0);
  std::vector<bf16> cpu = to(x, DType::bf16).to_vector<bf16>();
  std::vector<bf16> gpu = to(to(x, Device::cuda()), DType::bf16).to_vector<bf16>();
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_EQ(gpu[i].bits, cpu[i].bits) << i;
  EXPECT_EQ(to(to(to(x, DType::bf16), Device::cuda()), DType::f32).to_vector<float>(),
            to(to(x, DType::bf16), DType::f32).to_vector<float>());
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
