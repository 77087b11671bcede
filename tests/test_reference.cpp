// kiln against PyTorch: fixtures made by tests/reference/make_fixtures.py (torch.nn.LSTM / GRU,
// Linear + cross_entropy with label smoothing, one clip_grad_norm_ + optimizer step at a time)
// and stored as safetensors under tests/data. Outputs must match to 1e-5 relative error, every
// gradient and updated weight to 1e-4 (f32). The suite never needs PyTorch itself.
#include <cmath>

#include "core/safetensors.h"
#include "nn/nn.h"
#include "test_util.h"

#ifndef KILN_TEST_DATA_DIR
#error "KILN_TEST_DATA_DIR must point at tests/data"
#endif

namespace kiln {
namespace {

using safetensors::TensorMap;

TensorMap fixture(const std::string& name) {
  return safetensors::load(std::string(KILN_TEST_DATA_DIR) + "/" + name).tensors;
}

const Tensor& get(const TensorMap& map, const std::string& key) {
  auto found = map.find(key);
  if (found == map.end()) throw Error("fixture has no tensor '" + key + "'");
  return found->second;
}

// The "relative error" is the norm-wise one of testing::relative_error.
using testing::relative_error;

#define EXPECT_REL(actual, expected, tol)                                                  \
  do {                                                                                     \
    ASSERT_EQ((actual).shape(), (expected).shape()) << #actual;                            \
    double err_ = relative_error(actual, expected);                                        \
    EXPECT_LE(err_, tol) << #actual << " vs " << #expected << ": relative error " << err_; \
  } while (0)

void check_rnn_fixture(nn::CellType cell, const std::string& file) {
  TensorMap f = fixture(file);
  bool lstm = cell == nn::CellType::lstm;
  for (std::string c : {"plain", "init", "packed"}) {
    SCOPED_TRACE(file + " case " + c);
    nn::Recurrent rnn(cell, nn::RnnOptions{3, 4, 2});
    nn::StateDict weights;
    for (auto& [name, _] : rnn.named_parameters()) weights[name] = get(f, name);
    rnn.load_state_dict(weights);
    Tensor x = clone(get(f, "x")).set_requires_grad(true);
    Tensor h0 = clone(get(f, "h0")).set_requires_grad(true);
    Tensor c0 = lstm ? clone(get(f, "c0")).set_requires_grad(true) : Tensor();
    bool with_state = c != "plain";
    Tensor lengths = c == "packed" ? get(f, "lengths") : Tensor();
    nn::RnnState out =
        rnn.forward(x, with_state ? h0 : Tensor(), with_state ? c0 : Tensor(), lengths);
    EXPECT_REL(out.y, get(f, c + ".y"), 1e-5);
    EXPECT_REL(out.h_n, get(f, c + ".h_n"), 1e-5);
    if (lstm) EXPECT_REL(out.c_n, get(f, c + ".c_n"), 1e-5);
    Tensor loss = sum(out.y * get(f, "grad_y")) + sum(out.h_n * get(f, "grad_h_n"));
    if (lstm) loss = loss + sum(out.c_n * get(f, "grad_c_n"));
    backward(loss);
    EXPECT_REL(x.grad(), get(f, c + ".grad.x"), 1e-4);
    if (with_state) {
      EXPECT_REL(h0.grad(), get(f, c + ".grad.h0"), 1e-4);
      if (lstm) EXPECT_REL(c0.grad(), get(f, c + ".grad.c0"), 1e-4);
    }
    for (auto& [name, param] : rnn.named_parameters()) {
      SCOPED_TRACE(name);
      EXPECT_REL(param.grad(), get(f, c + ".grad." + name), 1e-4);
    }
  }
}

TEST(Reference, LstmMatchesPyTorch) { check_rnn_fixture(nn::CellType::lstm, "lstm.safetensors"); }
TEST(Reference, GruMatchesPyTorch) { check_rnn_fixture(nn::CellType::gru, "gru.safetensors"); }

TEST(Reference, LinearCrossEntropyWithSmoothingMatchesPyTorch) {
  TensorMap f = fixture("cross_entropy.safetensors");
  nn::Linear linear(8, 11);
  linear.load_state_dict({{"weight", get(f, "weight")}, {"bias", get(f, "bias")}});
  Tensor x = clone(get(f, "x")).set_requires_grad(true);
  Tensor targets = get(f, "targets");
  Tensor logits = linear.forward(x);
  EXPECT_REL(logits, get(f, "logits"), 1e-5);
  Tensor loss = cross_entropy(logits, targets, {-100, 0.1, Reduction::mean});
  EXPECT_REL(loss, get(f, "loss"), 1e-5);
  backward(loss);
  EXPECT_REL(linear.weight.grad(), get(f, "grad.weight"), 1e-4);
  EXPECT_REL(linear.bias.grad(), get(f, "grad.bias"), 1e-4);
  EXPECT_REL(x.grad(), get(f, "grad.x"), 1e-4);
  NoGradGuard no_grad;
  EXPECT_REL(cross_entropy(logits, targets, {-100, 0.1, Reduction::sum}), get(f, "loss_sum"), 1e-5);
  EXPECT_REL(cross_entropy(logits, targets, {-100, 0.1, Reduction::none}), get(f, "loss_none"),
             1e-5);
  EXPECT_REL(cross_entropy(logits, targets, {-100, 0.0, Reduction::mean}),
             get(f, "loss_no_smoothing"), 1e-5);
}

std::unique_ptr<nn::Optimizer> make_optimizer(const std::string& name, std::vector<Tensor> params) {
  if (name == "sgd")
    return std::make_unique<nn::SGD>(params, nn::SgdOptions{0.1, 0.9, 0, 0.01, false});
  if (name == "sgd_nesterov")
    return std::make_unique<nn::SGD>(params, nn::SgdOptions{0.1, 0.9, 0, 0.01, true});
  if (name == "adam")
    return std::make_unique<nn::Adam>(params, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.0});
  if (name == "adamw")
    return std::make_unique<nn::AdamW>(params, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.1});
  if (name == "rmsprop")
    return std::make_unique<nn::RMSprop>(params, nn::RmspropOptions{0.01, 0.99, 1e-8, 0, 0});
  return std::make_unique<nn::RMSprop>(params, nn::RmspropOptions{0.01, 0.99, 1e-8, 0, 0.9});
}

TEST(Reference, ClipAndOptimizerStepsMatchPyTorch) {
  TensorMap f = fixture("optimizers.safetensors");
  for (std::string name : {"sgd", "sgd_nesterov", "adam", "adamw", "rmsprop", "rmsprop_momentum"}) {
    SCOPED_TRACE(name);
    Tensor p0 = clone(get(f, "p0")).set_requires_grad(true),
           p1 = clone(get(f, "p1")).set_requires_grad(true);
    auto opt = make_optimizer(name, {p0, p1});
    for (int k = 1; k <= 2; ++k) {
      std::string step = ".step" + std::to_string(k);
      p0.set_grad(clone(get(f, "g0_step" + std::to_string(k))));
      p1.set_grad(clone(get(f, "g1_step" + std::to_string(k))));
      Tensor norm = nn::clip_grad_norm({p0, p1}, 1.0);
      EXPECT_REL(norm, get(f, name + step + ".total_norm"), 1e-5);
      if (k == 1) {
        EXPECT_REL(p0.grad(), get(f, "clip.g0"), 1e-5);
        EXPECT_REL(p1.grad(), get(f, "clip.g1"), 1e-5);
      }
      opt->step();
      EXPECT_REL(p0, get(f, name + step + ".p0"), 1e-4);
      EXPECT_REL(p1, get(f, name + step + ".p1"), 1e-4);
    }
  }
}

// PyTorch's bfloat16 of 623 f32 values (random over many magnitudes, then ties, near-ties, the
// largest values, denormals, zeros, infinities, NaNs): kiln's cast gives the same bits, and the
// BF16 tensor PyTorch wrote reads back as bf16.
TEST(Reference, Bf16CastsMatchPytorchBitForBit) {
  TensorMap f = fixture("bf16.safetensors");
  const Tensor& x = get(f, "x");
  const Tensor& expected = get(f, "x_bf16");
  ASSERT_EQ(expected.dtype(), DType::bf16);
  std::vector<bf16> want = expected.to_vector<bf16>(), got = to(x, DType::bf16).to_vector<bf16>();
  ASSERT_EQ(got.size(), want.size());
  ASSERT_GT(got.size(), 600u);
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(float(want[i]))) {
      // A NaN's bits are the converter's choice (PyTorch's vectorized CPU cast writes 0xFFFF for
      // every NaN, its scalar one 0x7FC0; kiln keeps the sign and quiets it): a NaN it must be.
      EXPECT_TRUE(std::isnan(float(got[i]))) << "value " << i;
      continue;
    }
    EXPECT_EQ(got[i].bits, want[i].bits) << "value " << i << " = " << x.to_vector<float>()[i];
  }
}

}  // namespace
}  // namespace kiln
