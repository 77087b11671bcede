// nn: module bookkeeping, layers, padding semantics, dropout, optimizers and their state, clipping,
// schedules. Values against PyTorch are in test_reference.cpp.
#include <cmath>

#include "nn/nn.h"
#include "test_util.h"

namespace kiln {
namespace {

using nn::RnnOptions;

std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> names;
  for (auto& [name, t] : m.named_parameters()) names.push_back(name);
  return names;
}

TEST(Module, RecurrentParameterNamesAndShapesArePyTorchs) {
  nn::LSTM lstm(RnnOptions{3, 5, 2, 0.0, true});
  std::vector<std::string> expected = {
      "weight_ih_l0",         "weight_hh_l0",         "bias_ih_l0",         "bias_hh_l0",
      "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      "weight_ih_l1",         "weight_hh_l1",         "bias_ih_l1",         "bias_hh_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  EXPECT_EQ(names_of(lstm), expected);
  nn::StateDict state = lstm.state_dict();
  EXPECT_EQ(state["weight_ih_l0"].shape(), (Shape{20, 3}));
  EXPECT_EQ(state["weight_ih_l1"].shape(), (Shape{20, 10}));  // input is both directions
  EXPECT_EQ(state["weight_hh_l1_reverse"].shape(), (Shape{20, 5}));
  nn::GRU gru(RnnOptions{3, 5});
  EXPECT_EQ(gru.state_dict()["weight_hh_l0"].shape(), (Shape{15, 5}));
  // PyTorch's init: uniform(-1/sqrt(H), 1/sqrt(H)).
  for (float v : state["weight_hh_l0"].to_vector<float>())
    EXPECT_LE(std::fabs(v), 1 / std::sqrt(5.0f));
}

struct TwoLayer : nn::Module {
  std::shared_ptr<nn::Linear> first = register_module("first", std::make_shared<nn::Linear>(4, 3));
  std::shared_ptr<nn::Linear> second =
      register_module("second", std::make_shared<nn::Linear>(3, 2, false));
};

TEST(Module, NestedNamesStateDictRoundTrip) {
  TwoLayer a, b;
  EXPECT_EQ(names_of(a), (std::vector<std::string>{"first.weight", "first.bias", "second.weight"}));
  EXPECT_EQ(a.num_parameters(), 4 * 3 + 3 + 3 * 2);
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.first->weight.to_vector<float>(), a.first->weight.to_vector<float>());
  EXPECT_FALSE(b.first->weight.same_as(a.first->weight));  // copied, not aliased
}

TEST(Module, StrictLoadListsEveryProblemAndLoadsNothing) {
  TwoLayer model;
  std::vector<float> before = model.first->bias.to_vector<float>();
  nn::StateDict state = model.state_dict();
  state.erase("second.weight");
  state["first.bias"] = zeros({3});  // fine on its own, but nothing may load
  state["first.weight"] = zeros({4, 4});
  state["third.weight"] = zeros({1});
  try {
    model.load_state_dict(state);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("3 problem(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing: second.weight"), std::string::npos) << msg;
    EXPECT_NE(
        msg.find("mismatch: first.weight is f32[4, 4] on cpu, the model has f32[3, 4] on cpu"),
        std::string::npos)
        << msg;
    EXPECT_NE(msg.find("unexpected: third.weight"), std::string::npos) << msg;
  }
  EXPECT_EQ(model.first->bias.to_vector<float>(), before);
}

// Under SkipInitScope the layers draw nothing (the Philox stream is where it was), a strict load
// then sets every parameter to the checkpoint's values, and the scope's end brings the draws back.
TEST(Module, SkipInitScopeDrawsNothingAndALoadSetsEveryParameter) {
  manual_seed(5);
  TwoLayer source;
  const nn::StateDict saved = source.state_dict();

  manual_seed(5);
  std::unique_ptr<TwoLayer> loaded;
  {
    nn::SkipInitScope outer;
    {
      nn::SkipInitScope inner;
    }
    loaded = std::make_unique<TwoLayer>();  // still skipped: the inner scope restored "skip"
    nn::GRU gru(nn::RnnOptions{4, 3, 2, 0.0, false});
    nn::Embedding embedding(10, 4, 0);
  }
  loaded->load_state_dict(saved);
  for (const auto& [name, value] : saved) {
    EXPECT_EQ(loaded->state_dict().at(name).to_vector<float>(), value.to_vector<float>()) << name;
  }

  manual_seed(5);
  {
    nn::SkipInitScope skip;
    TwoLayer skipped;
    nn::GRU gru(nn::RnnOptions{4, 3, 2, 0.0, false});
  }
  TwoLayer drawn;  // after the scope: drawn from where the stream stood, as `source` was
  EXPECT_EQ(drawn.state_dict().at("first.weight").to_vector<float>(),
            saved.at("first.weight").to_vector<float>());
}

TEST(Module, TrainEvalReachesChildren) {
  TwoLayer model;
  model.eval();
  EXPECT_FALSE(model.first->is_training());
  model.train();
  EXPECT_TRUE(model.second->is_training());
}

TEST(Module, ToDeviceMovesEveryHandle) {
  KILN_REQUIRE_GPU();
  TwoLayer model;
  Tensor handle = model.first->weight;
  std::vector<float> values = handle.to_vector<float>();
  model.to(Device::cuda());
  EXPECT_EQ(handle.device(), Device::cuda());
  EXPECT_EQ(model.state_dict()["first.weight"].device(), Device::cuda());
  EXPECT_EQ(handle.to_vector<float>(), values);
}

TEST(Layers, LinearMatchesItsFormula) {
  nn::Linear linear(3, 2);
  Tensor x = uniform({4, 3}, -1, 1);
  Tensor expected = matmul(x, transpose(linear.weight, 0, 1)) + linear.bias;
  EXPECT_TRUE(testing::all_close(linear.forward(x), expected, 1e-6, 1e-6));
  Tensor x3 = uniform({2, 4, 3}, -1, 1);
  EXPECT_EQ(linear.forward(x3).shape(), (Shape{2, 4, 2}));
}

TEST(Layers, EmbeddingPaddingRowIsZeroAndGetsNoGradient) {
  nn::Embedding emb(5, 3, /*padding_idx=*/0);
  EXPECT_EQ(select(emb.weight, 0).to_vector<float>(), std::vector<float>(3, 0.0f));
  Tensor index = from_vector<int64_t>({0, 2, 0, 2, 4}, {5});
  backward(sum(emb.forward(index)));
  std::vector<float> g = emb.weight.grad().to_vector<float>();
  EXPECT_EQ(std::vector<float>(g.begin(), g.begin() + 3),
            std::vector<float>(3, 0.0f));  // padding row
  EXPECT_EQ(g[2 * 3], 2.0f);               // row 2 looked up twice
  EXPECT_EQ(g[4 * 3], 1.0f);
}

TEST(Layers, DropoutScalesKeptElementsAndIsIdentityInEval) {
  nn::Dropout drop(0.25);
  Tensor x = ones({10000}).set_requires_grad(true);
  Tensor y = drop.forward(x);
  std::vector<float> v = y.to_vector<float>();
  int kept = 0;
  for (float e : v) {
    EXPECT_TRUE(e == 0.0f || std::fabs(e - 1.0f / 0.75f) < 1e-6f);
    kept += e != 0.0f;
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  backward(sum(y));
  EXPECT_EQ(x.grad().to_vector<float>(), v);  // the backward regenerates the same mask
  drop.eval();
  EXPECT_TRUE(drop.forward(x).same_as(x));
}

TEST(Layers, DropoutMaskIsTheSameOnCpuAndCuda) {
  KILN_REQUIRE_GPU();
  manual_seed(11);
  Tensor cpu = dropout(ones({5003}), 0.3, true);  // not a multiple of 4: the last call is short
  manual_seed(11);
  Tensor gpu = dropout(ones({5003}, Device::cuda()), 0.3, true);
  EXPECT_EQ(to(gpu, Device::cpu()).to_vector<float>(), cpu.to_vector<float>());
}

// Element i is kept when word i % 4 of philox(seed, offset + i / 4) is >= p (kernels/dropout.h),
// checked element by element against core/random.h; the generator still moves a counter an element.
TEST(Layers, DropoutMaskIsFourPhiloxWordsPerCounter) {
  manual_seed(7);
  default_generator().set_offset(10);
  const int64_t n = 4003;
  const double p = 0.4;
  std::vector<float> y = dropout(ones({n}), p, true).to_vector<float>();
  EXPECT_EQ(default_generator().offset(), static_cast<uint64_t>(10 + n));
  int kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    PhiloxOutput r = philox4x32(10 + static_cast<uint64_t>(i / 4), 0, 7);
    bool keep = philox_uniform_float(r.x[i % 4]) >= static_cast<float>(p);
    ASSERT_EQ(y[i], keep ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f) << "element " << i;
    kept += keep;
  }
  EXPECT_NEAR(kept / static_cast<double>(n), 1 - p, 0.03);
}

// x[:len, b:b+1, :] of a [T, B, F] tensor, as [len, 1, F].
Tensor sequence_slice(const Tensor& x, int64_t b, int64_t len) {
  return narrow(transpose(narrow(transpose(x, 0, 1), b, 1), 0, 1), 0, len);
}

// Running a padded batch equals running each sequence alone on its real steps.
void check_padding_is_invisible(nn::CellType cell, bool bidirectional) {
  manual_seed(5);
  nn::Recurrent rnn(cell, RnnOptions{3, 4, 2, 0.0, bidirectional, DType::f64});
  Tensor x = uniform({5, 2, 3}, -1, 1, DType::f64);
  Tensor lengths = from_vector<int64_t>({5, 3}, {2});
  nn::RnnState batch = rnn.forward(x, Tensor(), Tensor(), lengths);
  // The caller's mask (Seq2Seq::encode makes it once per batch) gives the same outputs.
  nn::RnnState given =
      rnn.forward(x, Tensor(), Tensor(), lengths, nn::sequence_mask(lengths, 5, x.options()));
  EXPECT_TRUE(testing::all_close(given.y, batch.y, 0, 0));
  EXPECT_TRUE(testing::all_close(given.h_n, batch.h_n, 0, 0));
  for (int64_t b = 0; b < 2; ++b) {
    int64_t len = b == 0 ? 5 : 3;
    // Sequence b alone, only its real steps.
    Tensor alone_x = sequence_slice(x, b, len);
    nn::RnnState alone = rnn.forward(alone_x);
    Tensor y_b = sequence_slice(batch.y, b, len);
    EXPECT_TRUE(testing::all_close(y_b, alone.y, 1e-12, 1e-12)) << "y of sequence " << b;
    Tensor h_b = reshape(narrow(transpose(batch.h_n, 0, 1), b, 1), alone.h_n.shape());
    EXPECT_TRUE(testing::all_close(h_b, alone.h_n, 1e-12, 1e-12)) << "h_n of sequence " << b;
  }
  // Padded steps output zeros.
  std::vector<double> y = batch.y.to_vector<double>();
  int64_t width = batch.y.size(2);
  for (int64_t t = 3; t < 5; ++t) {
    for (int64_t j = 0; j < width; ++j) EXPECT_EQ(y[(t * 2 + 1) * width + j], 0.0);
  }
}

TEST(Recurrent, PaddingDoesNotChangeAnyOutputLstm) {
  check_padding_is_invisible(nn::CellType::lstm, true);
}
TEST(Recurrent, PaddingDoesNotChangeAnyOutputGru) {
  check_padding_is_invisible(nn::CellType::gru, true);
}

// input_gates (layer 0's input products, one [T, B, G] per direction, as prepared encoding looks
// them up) give the outputs of passing x itself, bidirectional and padded; a wrong count, or
// input_gates with fixed_input, is an error naming them.
TEST(Recurrent, GivenInputGatesEqualTheInputsProducts) {
  for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
    manual_seed(13);
    nn::Recurrent rnn(cell, RnnOptions{5, 4, 2, 0.0, true, DType::f64});
    Tensor x = uniform({4, 3, 5}, -1, 1, DType::f64);
    Tensor lengths = from_vector<int64_t>({4, 2, 3}, {3});
    nn::RnnState plain = rnn.forward(x, Tensor(), Tensor(), lengths);
    std::vector<Tensor> gates;
    for (int64_t dir = 0; dir < 2; ++dir) {
      const Tensor& w_ih = rnn.weights(0, dir).w_ih;  // [G, I]
      gates.push_back(reshape(matmul(reshape(x, {12, 5}), w_ih, false, true), {4, 3, -1}));
    }
    Tensor no_features = zeros({4, 3, 0}, DType::f64);
    nn::RnnState given =
        rnn.forward(no_features, Tensor(), Tensor(), lengths, Tensor(), Tensor(), nullptr, gates);
    EXPECT_TRUE(testing::all_close(given.y, plain.y, 1e-12, 1e-12));
    EXPECT_TRUE(testing::all_close(given.h_n, plain.h_n, 1e-12, 1e-12));
    EXPECT_CONTAINS(testing::error_of([&] {
                      rnn.forward(no_features, Tensor(), Tensor(), lengths, Tensor(), Tensor(),
                                  nullptr, {gates[0]});
                    }),
                    "input_gates must hold one tensor per direction (2)");
    EXPECT_CONTAINS(testing::error_of([&] {
                      rnn.forward(x, Tensor(), Tensor(), lengths, Tensor(), Tensor(), nullptr,
                                  gates);
                    }),
                    "x must be [T, B, 0] (input_gates hold layer 0's input)");
  }
}

// fixed_input (d2l's decoder context, the same at every step) gives the outputs and gradients of
// feeding [x; fixed_input] at every step, bidirectional and padded included.
// fixed_input (d2l's decoder context, the same at every step) gives the outputs and gradients of
// feeding [x; fixed_input] at every step, bidirectional and padded included.
TEST(Recurrent, FixedInputEqualsRepeatingItAtEveryStep) {
  for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
    manual_seed(9);
    nn::Recurrent rnn(cell, RnnOptions{5, 4, 2, 0.0, true, DType::f64});
    Tensor x = uniform({4, 3, 2}, -1, 1, DType::f64).set_requires_grad(true);
    Tensor fixed = uniform({3, 3}, -1, 1, DType::f64).set_requires_grad(true);
    Tensor lengths = from_vector<int64_t>({4, 2, 3}, {3});
    auto run = [&](bool repeated) {
      for (Tensor p : rnn.parameters()) p.set_grad(Tensor());
      x.set_grad(Tensor());
      fixed.set_grad(Tensor());
      nn::RnnState s =
          repeated ? rnn.forward(cat({x, reshape(fixed, {1, 3, 3}) + zeros({4, 3, 3}, DType::f64)},
                                     -1),
                                 Tensor(), Tensor(), lengths)
                   : rnn.forward(x, Tensor(), Tensor(), lengths, Tensor(), fixed);
      backward(sum(s.y * s.y) + sum(s.h_n) + (s.c_n.defined() ? sum(s.c_n) : zeros({}, DType::f64)));
      std::vector<Tensor> out{s.y.detach(), s.h_n.detach(), x.grad(), fixed.grad()};
      for (const Tensor& p : rnn.parameters()) out.push_back(clone(p.grad()));
      return out;
    };
    std::vector<Tensor> want = run(true), got = run(false);
    ASSERT_EQ(want.size(), got.size());
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_TRUE(testing::all_close(got[k], want[k], 1e-12, 1e-12)) << "output/gradient " << k;
    }
  }
  nn::GRU gru(RnnOptions{5, 4});
  EXPECT_CONTAINS(testing::error_of([&] { gru.forward(zeros({2, 3, 2}), {}, {}, {}, {}, zeros({3, 2})); }),
                  "GRU: x must be [T, B, 3] (the input features before fixed_input's), got f32[2, 3, 2]");
  EXPECT_CONTAINS(testing::error_of([&] { gru.forward(zeros({2, 3, 3}), {}, {}, {}, {}, zeros({2, 2})); }),
                  "GRU: fixed_input must be [B, F] with B = 3 and 0 < F < 5, got f32[2, 2]");
}

TEST(Recurrent, CellEqualsOneStepOfTheLayer) {
  nn::LSTMCell cell(3, 4);
  nn::LSTM layer(RnnOptions{3, 4});
  layer.load_state_dict({{"weight_ih_l0", cell.weights.w_ih},
                         {"weight_hh_l0", cell.weights.w_hh},
                         {"bias_ih_l0", cell.weights.b_ih},
                         {"bias_hh_l0", cell.weights.b_hh}});
  Tensor x = uniform({2, 3}, -1, 1);
  nn::RnnState one = cell.forward(x);
  nn::RnnState full = layer.forward(reshape(x, {1, 2, 3}));
  EXPECT_TRUE(testing::all_close(one.h_n, select(full.h_n, 0), 0, 0));
  EXPECT_TRUE(testing::all_close(one.c_n, select(full.c_n, 0), 0, 0));
}

TEST(Recurrent, BadShapesAreNamed) {
  nn::GRU gru(RnnOptions{3, 4});
  try {
    gru.forward(zeros({5, 2, 4}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GRU: x must be [T, B, 3], got f32[5, 2, 4]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(gru.forward(zeros({5, 2, 3}), Tensor(), Tensor(), from_vector<int64_t>({6, 1}, {2})),
               Error);
  Tensor lengths = from_vector<int64_t>({5, 1}, {2});
  std::string error = testing::error_of([&] {
    gru.forward(zeros({5, 2, 3}), Tensor(), Tensor(), lengths, ones({4, 2}));
  });
  EXPECT_CONTAINS(error, "GRU: step_mask must be the [5, 2] f32 mask of the lengths on cpu, got");
  // Transposed weights that are not the transposes' shapes (RnnWeights::w_ih_t, w_hh_t).
  RnnWeights w = gru.weights(0);
  w.w_hh_t = w.w_hh;  // [12, 4], not [4, 12]
  EXPECT_CONTAINS(testing::error_of([&] { gru_layer(zeros({5, 2, 3}), zeros({2, 4}), w); }),
                  "gru: weight_hh transposed must be [4, 12], got f32[12, 4]");
  w = gru.weights(0);
  w.w_ih_t = zeros({4, 12});
  EXPECT_CONTAINS(testing::error_of([&] { gru_layer(zeros({5, 2, 3}), zeros({2, 4}), w); }),
                  "gru: weight_ih transposed must be [3, 12], got f32[4, 12]");
}

TEST(Optim, ClipGradNormScalesToMaxNorm) {
  Tensor a = zeros({2}).set_requires_grad(true), b = zeros({1}).set_requires_grad(true);
  a.set_grad(from_vector<float>({3, 0}, {2}));
  b.set_grad(from_vector<float>({4}, {1}));
  Tensor norm = nn::clip_grad_norm({a, b}, 1.0);
  EXPECT_FLOAT_EQ(norm.item(), 5.0f);
  EXPECT_NEAR(a.grad().to_vector<float>()[0], 0.6, 1e-6);
  EXPECT_NEAR(b.grad().to_vector<float>()[0], 0.8, 1e-6);
  // Under the limit: untouched.
  norm = nn::clip_grad_norm({a, b}, 10.0);
  EXPECT_NEAR(norm.item(), 1.0, 1e-6);
  EXPECT_NEAR(b.grad().to_vector<float>()[0], 0.8, 1e-6);
}

TEST(Optim, NonFiniteNormIsReportedAndNotApplied) {
  Tensor a = zeros({2}).set_requires_grad(true);
  a.set_grad(from_vector<float>({INFINITY, 1}, {2}));
  Tensor norm = nn::clip_grad_norm({a}, 1.0);
  EXPECT_TRUE(std::isinf(norm.item()));
  EXPECT_EQ(a.grad().to_vector<float>()[1], 1.0f);
  a.set_grad(from_vector<float>({NAN, 1}, {2}));
  nn::ClipFactor factor = nn::clip_grad_norm_factor({a}, 1.0);
  EXPECT_TRUE(std::isnan(factor.norm.item()));
  EXPECT_TRUE(std::isnan(factor.scale.item()));  // the optimizer's cue to drop the step
  nn::clip_grad_norm({a}, 1.0);
  EXPECT_EQ(a.grad().to_vector<float>()[1], 1.0f);
}

// A non-finite gradient norm makes the clip factor NaN, and step(factor) drops the update on the
// device: parameters and state stay, the applied count does not move (so Adam's bias correction
// of the next update is that of a run without the bad step), and the weight average is left
// alone. Nothing but the test reads the device.
TEST(Optim, NonFiniteClipFactorDropsTheStepOnTheDevice) {
  for (int which = 0; which < 4; ++which) {
    auto make = [&](const Tensor& p) -> std::unique_ptr<nn::Optimizer> {
      switch (which) {
        case 0:
          return std::make_unique<nn::SGD>(std::vector<Tensor>{p},
                                           nn::SgdOptions{0.1, 0.9, 0.5});  // dampening: first
        case 1: return std::make_unique<nn::Adam>(std::vector<Tensor>{p}, nn::AdamOptions{0.01});
        case 2:
          return std::make_unique<nn::AdamW>(std::vector<Tensor>{p},
                                             nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.1});
        default:
          return std::make_unique<nn::RMSprop>(std::vector<Tensor>{p},
                                               nn::RmspropOptions{0.01, 0.99, 1e-8, 0, 0.9});
      }
    };
    manual_seed(5);
    Tensor p0 = uniform({50}, -1, 1), g1 = uniform({50}, -1, 1), g2 = uniform({50}, -1, 1);
    Tensor bad_grad = copy_to(g1, {});
    bad_grad.data<float>()[7] = NAN;
    // `skipping` sees a NaN gradient, g1, a NaN gradient, g2; `clean` sees g1 and g2 only (so
    // SGD's first-update rule and Adam's bias corrections must count applied updates).
    Tensor skipping = copy_to(p0, {}).set_requires_grad(true), clean = copy_to(p0, {});
    clean.set_requires_grad(true);
    auto skipping_opt = make(skipping), clean_opt = make(clean);
    auto step = [](Tensor p, nn::Optimizer& opt, const Tensor& grad) {
      p.set_grad(copy_to(grad, {}));
      nn::ClipFactor clip = nn::clip_grad_norm_factor({p}, 1.0);
      opt.step(clip.scale);
      return clip;
    };
    step(skipping, *skipping_opt, bad_grad);
    EXPECT_EQ(skipping.to_vector<float>(), p0.to_vector<float>()) << "optimizer " << which;
    step(skipping, *skipping_opt, g1);
    step(clean, *clean_opt, g1);
    std::vector<float> after_first = skipping.to_vector<float>();
    nn::StateDict state_before = skipping_opt->state_dict();
    nn::ClipFactor bad = step(skipping, *skipping_opt, bad_grad);
    EXPECT_TRUE(std::isnan(bad.norm.item())) << "optimizer " << which;
    EXPECT_TRUE(std::isnan(bad.scale.item())) << "optimizer " << which;
    EXPECT_EQ(skipping_opt->step_gate().to_vector<float>()[0], 0.0f) << "optimizer " << which;
    EXPECT_EQ(skipping.to_vector<float>(), after_first) << "optimizer " << which;
    nn::StateDict state_after = skipping_opt->state_dict();
    for (const auto& [key, value] : state_before) {
      if (key == "calls") continue;
      EXPECT_EQ(copy_to(state_after.at(key), {DType::f64}).to_vector<double>(),
                copy_to(value, {DType::f64}).to_vector<double>())
          << "optimizer " << which << " " << key;
    }
    EXPECT_EQ(skipping_opt->step_count(), 3);
    EXPECT_EQ(skipping_opt->applied_steps(), 1);
    step(skipping, *skipping_opt, g2);
    step(clean, *clean_opt, g2);
    EXPECT_EQ(skipping_opt->step_gate().to_vector<float>()[0], 1.0f);
    EXPECT_EQ(skipping.to_vector<float>(), clean.to_vector<float>()) << "optimizer " << which;
    // Resumed from the state dict: the applied count and the calls both come back.
    Tensor resumed = copy_to(skipping, {}).set_requires_grad(true);
    auto resumed_opt = make(resumed);
    resumed_opt->load_state_dict(skipping_opt->state_dict());
    EXPECT_EQ(resumed_opt->step_count(), 4);
    EXPECT_EQ(resumed_opt->applied_steps(), 2);
  }
}

TEST(Optim, WeightAverageSkipsADroppedStep) {
  nn::Linear model(3, 1, /*bias=*/false);
  nn::SGD opt(model.parameters(), nn::SgdOptions{0.1});
  nn::ExponentialMovingAverage ema(model, 0.5, /*warmup=*/false);
  model.weight.set_grad(from_vector<float>({1, NAN, 1}, {1, 3}));
  opt.step(nn::clip_grad_norm_factor(model.parameters(), 1.0).scale);
  std::vector<float> before = ema.state_dict().at("weight").to_vector<float>();
  model.weight.set_grad(from_vector<float>({1, NAN, 1}, {1, 3}));
  {
    NoGradGuard no_grad;
    copy_(model.weight, from_vector<float>({5, 5, 5}, {1, 3}));
  }
  ema.update(opt.step_gate());  // the step was dropped: the average must not follow the 5s
  EXPECT_EQ(ema.state_dict().at("weight").to_vector<float>(), before);
  ema.update();  // without a gate: it does
  EXPECT_NE(ema.state_dict().at("weight").to_vector<float>(), before);
}

// The meter sums loss x tokens of the taken steps on the device and counts the dropped ones.
TEST(Optim, StepMeterTotalsTakenAndDroppedSteps) {
  nn::StepMeter meter;
  Tensor taken = from_vector<float>({1, 1, 0, 0}, {4}),
         dropped = from_vector<float>({0, 0, 0, 0}, {4});
  meter.add(scalar_tensor(2.0f), scalar_tensor(0.5f), taken, 10);
  meter.add(scalar_tensor(100.0f), scalar_tensor(NAN), dropped, 7);
  meter.add(scalar_tensor(4.0f), scalar_tensor(0.25f), taken, 30);
  nn::StepMeter::Totals t = meter.take();
  EXPECT_DOUBLE_EQ(t.loss_sum, 2.0 * 10 + 4.0 * 30);
  EXPECT_DOUBLE_EQ(t.tokens, 40);
  EXPECT_EQ(t.taken, 2);
  EXPECT_EQ(t.dropped, 1);
  EXPECT_DOUBLE_EQ(t.last_norm, 0.25);
  nn::StepMeter::Totals empty = meter.take();  // take() restarts the totals
  EXPECT_EQ(empty.taken + empty.dropped, 0);
  EXPECT_EQ(empty.loss_sum, 0);
}

// clip_grad_norm_factor + step(scale) (the factor applied inside the fused update) gives exactly
// the parameters of clip_grad_norm + step(), for every optimizer, and leaves the gradients alone.
TEST(Optim, ClipFactorInTheStepEqualsClippingFirst) {
  for (int which = 0; which < 4; ++which) {
    auto make = [&](const Tensor& p) -> std::unique_ptr<nn::Optimizer> {
      switch (which) {
        case 0: return std::make_unique<nn::SGD>(std::vector<Tensor>{p}, nn::SgdOptions{0.1, 0.9});
        case 1: return std::make_unique<nn::Adam>(std::vector<Tensor>{p}, nn::AdamOptions{0.01});
        case 2:
          return std::make_unique<nn::AdamW>(std::vector<Tensor>{p},
                                             nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.1});
        default:
          return std::make_unique<nn::RMSprop>(std::vector<Tensor>{p},
                                               nn::RmspropOptions{0.01, 0.99, 1e-8, 0, 0.9});
      }
    };
    manual_seed(4);
    Tensor p0 = uniform({300}, -1, 1), g = uniform({300}, -1, 1);
    Tensor first = copy_to(p0, {}).set_requires_grad(true), inside = copy_to(p0, {});
    inside.set_requires_grad(true);
    auto first_opt = make(first), inside_opt = make(inside);
    for (int step = 0; step < 3; ++step) {
      first.set_grad(copy_to(g, {}));
      inside.set_grad(copy_to(g, {}));
      nn::clip_grad_norm({first}, 1.0);
      first_opt->step();
      nn::ClipFactor clip = nn::clip_grad_norm_factor({inside}, 1.0);
      EXPECT_FLOAT_EQ(clip.scale.item(), 1.0f / (clip.norm.item() + 1e-6f));
      inside_opt->step(clip.scale);
      EXPECT_EQ(inside.grad().to_vector<float>(), g.to_vector<float>()) << "optimizer " << which;
    }
    EXPECT_EQ(inside.to_vector<float>(), first.to_vector<float>()) << "optimizer " << which;
  }
}

// zero_grad(true) leaves every gradient undefined and the next backward defines it again; the
// training it gives is bit for bit that of zeroing in place (a parameter used twice takes its
// first gradient and adds the second, either way).
TEST(Optim, ZeroGradToNoneTrainsExactlyAsZeroingInPlace) {
  auto run = [](bool set_to_none) {
    manual_seed(4);
    nn::Linear model(4, 3);
    nn::Adam opt(model.parameters(), nn::AdamOptions{0.05});
    Tensor x = uniform({8, 4}, -1, 1);
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad(set_to_none);
      for (const Tensor& p : model.parameters()) EXPECT_EQ(p.grad().defined(), !set_to_none && i > 0);
      Tensor h = model.forward(x);
      backward(sum(tanh(h) * h + model.forward(x)));
      opt.step(nn::clip_grad_norm_factor(model.parameters(), 0.5).scale);
    }
    model.zero_grad(set_to_none);
    for (const Tensor& p : model.parameters()) {
      EXPECT_EQ(p.grad().defined(), !set_to_none);
      if (!set_to_none) {
        EXPECT_EQ(sum(p.grad() * p.grad()).item(), 0.0);
      }
    }
    std::vector<float> weights = model.weight.to_vector<float>();
    std::vector<float> bias = model.bias.to_vector<float>();
    weights.insert(weights.end(), bias.begin(), bias.end());
    return weights;
  };
  EXPECT_EQ(run(true), run(false));
}

TEST(Optim, ResumeFromStateDictIsExact) {
  auto run = [](int steps_before, bool resume) {
    manual_seed(3);
    nn::Linear model(4, 2);
    nn::Adam opt(model.parameters(), nn::AdamOptions{0.05});
    Tensor x = uniform({8, 4}, -1, 1);
    auto one_step = [&](nn::Linear& m, nn::Optimizer& o) {
      o.zero_grad();
      backward(sum(tanh(m.forward(x))));
      o.step();
    };
    for (int i = 0; i < steps_before; ++i) one_step(model, opt);
    if (!resume) {
      for (int i = 0; i < 3; ++i) one_step(model, opt);
      return model.weight.to_vector<float>();
    }
    nn::Linear restored(4, 2);
    restored.load_state_dict(model.state_dict());
    nn::Adam restored_opt(restored.parameters(), nn::AdamOptions{0.05});
    restored_opt.load_state_dict(opt.state_dict());
    EXPECT_EQ(restored_opt.step_count(), steps_before);
    for (int i = 0; i < 3; ++i) one_step(restored, restored_opt);
    return restored.weight.to_vector<float>();
  };
  EXPECT_EQ(run(4, true), run(4, false));
}

TEST(Optim, SchedulesFollowTheirFormulas) {
  EXPECT_DOUBLE_EQ(nn::StepDecayLr(1.0, 10, 0.5).lr_at(25), 0.25);
  nn::WarmupInverseSqrtLr inv(1.0, 100);
  EXPECT_DOUBLE_EQ(inv.lr_at(50), 0.5);
  EXPECT_DOUBLE_EQ(inv.lr_at(400), 0.5);
  nn::WarmupCosineLr cosine(1.0, 10, 110, 0.1);
  EXPECT_DOUBLE_EQ(cosine.lr_at(10), 1.0);
  EXPECT_NEAR(cosine.lr_at(60), 0.55, 1e-12);
  EXPECT_DOUBLE_EQ(cosine.lr_at(200), 0.1);
}

// Every optimizer: the CUDA update (one multi-tensor launch) equals the CPU one.
TEST(Optim, CudaStepsMatchCpu) {
  KILN_REQUIRE_GPU();
  for (int which = 0; which < 4; ++which) {
    std::vector<Tensor> cpu_params, gpu_params;
    manual_seed(21);
    for (Shape shape : {Shape{300, 70}, Shape{17}, Shape{40000}}) {
      Tensor p = uniform(shape, -1, 1), g = uniform(shape, -1, 1);
      Tensor q = to(p, Device::cuda());
      p.set_requires_grad(true);
      q.set_requires_grad(true);
      p.set_grad(g);
      q.set_grad(to(g, Device::cuda()));
      cpu_params.push_back(p);
      gpu_params.push_back(q);
    }
    auto make = [&](std::vector<Tensor> params) -> std::unique_ptr<nn::Optimizer> {
      switch (which) {
        case 0: return std::make_unique<nn::SGD>(params, nn::SgdOptions{0.1, 0.9, 0, 0.01, true});
        case 1:
          return std::make_unique<nn::Adam>(params, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.01});
        case 2:
          return std::make_unique<nn::AdamW>(params, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.1});
        default:
          return std::make_unique<nn::RMSprop>(params,
                                               nn::RmspropOptions{0.01, 0.99, 1e-8, 0, 0.9});
      }
    };
    auto cpu_opt = make(cpu_params), gpu_opt = make(gpu_params);
    for (int step = 0; step < 3; ++step) {
      Tensor cpu_norm = nn::clip_grad_norm(cpu_params, 20.0),
             gpu_norm = nn::clip_grad_norm(gpu_params, 20.0);
      EXPECT_NEAR(gpu_norm.item(), cpu_norm.item(), 1e-3 * cpu_norm.item());
      cpu_opt->step();
      gpu_opt->step();
    }
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      EXPECT_TRUE(testing::all_close(gpu_params[i], cpu_params[i], 1e-5, 1e-4))
          << "optimizer " << which << " param " << i;
    }
  }
}

// ---- Weight averaging (nn/averaging.h) ----

// One parameter "v" of three values, set by hand before each update.
struct ThreeWeights : nn::Module {
  explicit ThreeWeights(DType dtype) { v = register_parameter("v", zeros({3}, {dtype})); }
  void set(const std::vector<double>& values) {
    NoGradGuard no_grad;
    copy_(v, from_vector<double>(values, {3}));
  }
  std::vector<double> values() const { return copy_to(v, {DType::f64}).to_vector<double>(); }
  Tensor v;
};

std::vector<double> average_of(const nn::ExponentialMovingAverage& ema) {
  return copy_to(ema.state_dict().at("v"), {DType::f64}).to_vector<double>();
}

TEST(Ema, WarmupUpdatesEqualTheFormulaByHand) {
  ThreeWeights m(DType::f64);
  m.set({1, 2, 4});
  nn::ExponentialMovingAverage ema(m, 0.5);  // starts as a copy of the weights
  // d_t = min(0.5, (1 + t) / (10 + t)): 2/11, 3/12, 4/13, ..., 9/18 = 0.5 from t = 8 on.
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 2.0 / 11);
  EXPECT_DOUBLE_EQ(ema.decay_at(3), 4.0 / 13);
  EXPECT_DOUBLE_EQ(ema.decay_at(8), 0.5);
  EXPECT_DOUBLE_EQ(ema.decay_at(1000), 0.5);
  m.set({3, 0, 4});
  ema.update();  // 2/11 {1, 2, 4} + 9/11 {3, 0, 4}
  std::vector<double> expected = {29.0 / 11, 4.0 / 11, 4};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(average_of(ema)[i], expected[i], 1e-14) << i;
  m.set({-1, 4, 4});
  ema.update();  // 1/4 {29/11, 4/11, 4} + 3/4 {-1, 4, 4}
  expected = {-1.0 / 11, 34.0 / 11, 4};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(average_of(ema)[i], expected[i], 1e-14) << i;
  m.set({10, 10, 4});
  ema.update();  // 4/13 {-1/11, 34/11, 4} + 9/13 {10, 10, 4}
  expected = {986.0 / 143, 1126.0 / 143, 4};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(average_of(ema)[i], expected[i], 1e-14) << i;
  EXPECT_EQ(ema.num_updates(), 3);
  EXPECT_EQ(m.values(), (std::vector<double>{10, 10, 4}));  // the weights themselves untouched
}

TEST(Ema, WithoutWarmupEveryUpdateUsesTheDecayExactly) {
  ThreeWeights m(DType::f32);
  m.set({4, 8, -4});
  nn::ExponentialMovingAverage ema(m, 0.75, /*warmup=*/false);
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 0.75);
  m.set({0, 0, 4});
  ema.update();  // 3/4 {4, 8, -4} + 1/4 {0, 0, 4}: exact in f32
  EXPECT_EQ(average_of(ema), (std::vector<double>{3, 6, -2}));
  m.set({4, 4, 4});
  ema.update();  // 3/4 {3, 6, -2} + 1/4 {4, 4, 4}
  EXPECT_EQ(average_of(ema), (std::vector<double>{3.25, 5.5, -0.5}));
}

TEST(Ema, SwapScopeEvaluatesTheAverageAndRestoresTheWeights) {
  ThreeWeights m(DType::f32);
  m.set({4, 8, -4});
  nn::ExponentialMovingAverage ema(m, 0.75, false);
  m.set({0, 0, 4});
  ema.update();
  {
    nn::AveragedWeightsScope averaged(ema);
    EXPECT_EQ(m.values(), (std::vector<double>{3, 6, -2}));
    EXPECT_CONTAINS(testing::error_of([&] { ema.update(); }), "swapped into the module");
  }
  EXPECT_FALSE(ema.swapped());
  EXPECT_EQ(m.values(), (std::vector<double>{0, 0, 4}));
  EXPECT_EQ(average_of(ema), (std::vector<double>{3, 6, -2}));
  try {  // an exception inside the scope still puts the weights back
    nn::AveragedWeightsScope averaged(ema);
    throw Error("validation failed");
  } catch (const Error&) {
  }
  EXPECT_EQ(m.values(), (std::vector<double>{0, 0, 4}));
}

TEST(Ema, ResumeFromStateDictIsExact) {
  ThreeWeights m(DType::f32), restored_m(DType::f32);
  m.set({1, 2, 3});
  nn::ExponentialMovingAverage ema(m, 0.9);
  for (int t = 0; t < 4; ++t) {
    m.set({1.0 + t, 2.0 * t, 3.0 - t});
    ema.update();
  }
  restored_m.set(m.values());
  nn::ExponentialMovingAverage restored(restored_m, 0.9);
  restored.load_state_dict(ema.state_dict(), ema.num_updates());
  for (int t = 4; t < 7; ++t) {  // the warm-up continues at t = 5
    m.set({0.5 * t, 1.0, -t * 1.0});
    restored_m.set(m.values());
    ema.update();
    restored.update();
  }
  EXPECT_EQ(average_of(restored), average_of(ema));
  EXPECT_EQ(restored.num_updates(), 7);
  std::string error = testing::error_of([&] {
    restored.load_state_dict({{"w", zeros({3})}, {"v", zeros({2})}}, 1);
  });
  EXPECT_CONTAINS(error, "mismatch: v is f32[2]");
  EXPECT_CONTAINS(error, "unexpected: w");
}

TEST(Ema, DecayOutsideZeroToOneIsRefused) {
  ThreeWeights m(DType::f32);
  for (double decay : {0.0, 1.0, -0.5, 1.5, std::nan("")}) {
    EXPECT_CONTAINS(testing::error_of([&] { nn::ExponentialMovingAverage ema(m, decay); }),
                    "decay must be in (0, 1)");
  }
}

TEST(Ema, CudaMatchesCpu) {
  KILN_REQUIRE_GPU();
  manual_seed(5);
  nn::Linear cpu(300, 70);
  manual_seed(5);
  nn::Linear gpu(300, 70);
  gpu.to(Device::cuda());
  nn::ExponentialMovingAverage cpu_ema(cpu, 0.99), gpu_ema(gpu, 0.99);
  for (int t = 0; t < 3; ++t) {
    Tensor w = uniform({70, 300}, -1, 1);
    {
      NoGradGuard no_grad;
      copy_(cpu.weight, w);
      copy_(gpu.weight, to(w, Device::cuda()));
    }
    cpu_ema.update();
    gpu_ema.update();
  }
  for (const auto& [name, average] : cpu_ema.state_dict())
    EXPECT_TRUE(testing::all_close(gpu_ema.state_dict().at(name), average, 1e-6, 1e-5)) << name;
}

TEST(AverageStateDicts, IdenticalGiveThemAndTwoGiveTheElementwiseMean) {
  manual_seed(9);
  nn::StateDict a = {{"w", uniform({4, 5}, -1, 1)}, {"b", uniform({5}, -1, 1)}};
  nn::StateDict b = {{"w", uniform({4, 5}, -1, 1)}, {"b", uniform({5}, -1, 1)}};
  nn::StateDict same = nn::average_state_dicts({a, a, a}, {"a1", "a2", "a3"});
  for (const auto& [name, value] : a)
    EXPECT_EQ(same.at(name).to_vector<float>(), value.to_vector<float>()) << name;
  nn::StateDict mean = nn::average_state_dicts({a, b}, {"a", "b"});
  for (const auto& [name, value] : a) {
    std::vector<float> x = value.to_vector<float>(), y = b.at(name).to_vector<float>(), expected;
    for (size_t i = 0; i < x.size(); ++i)
      expected.push_back(static_cast<float>((double(x[i]) + double(y[i])) / 2));
    EXPECT_EQ(mean.at(name).to_vector<float>(), expected) << name;
    EXPECT_NE(mean.at(name).to_vector<float>(), x) << name;
  }
  nn::StateDict wrong = {{"w", zeros({5, 4})}, {"b", zeros({5})}};
  EXPECT_CONTAINS(testing::error_of([&] {
                    nn::average_state_dicts({a, wrong}, {"a", "wrong"});
                  }),
                  "'w' is f32[5, 4] on cpu in wrong but f32[4, 5] on cpu in a");
  nn::StateDict more = a;
  more["extra"] = zeros({1});
  EXPECT_CONTAINS(testing::error_of([&] {
                    nn::average_state_dicts({a, more}, {"a", "more"});
                  }),
                  "more has 'extra', which a does not have");
}

}  // namespace
}  // namespace kiln
