// The communicator and data parallelism. ctest runs this program twice: alone (a world of one,
// where every collective is the identity) and under `mpirun -np 2` (tests/CMakeLists.txt), where
// each rank trains on its share of the batch and must end up where one process does on the whole
// batch. Every rank runs every test, so collectives stay matched; an assertion that fails on one
// rank fails the mpirun job.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <thread>

#include "kiln.h"
#include "models/seq2seq/model.h"

namespace kiln {
namespace {

dist::Communicator& comm() { return dist::world(); }

// This rank's share [begin, end) of `n` items split as evenly as possible.
std::pair<int64_t, int64_t> share(int64_t n) {
  int64_t r = comm().rank(), size = comm().world_size();
  return {n * r / size, n * (r + 1) / size};
}

// Largest |a - b| over a parameter, relative to the parameter's largest magnitude.
double relative_difference(const Tensor& a, const Tensor& b) {
  std::vector<double> x = copy_to(a, {DType::f64, Device::cpu()}).to_vector<double>();
  std::vector<double> y = copy_to(b, {DType::f64, Device::cpu()}).to_vector<double>();
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(y[i]));
  }
  return diff / scale;
}

// loss(model parameters' owner, step, begin, end): the loss of batch `step` restricted to items
// [begin, end), normalised so that the ranks' losses add up (sum) or average (average) to the
// loss of the whole batch.
template <class Model> using LossFn = std::function<Tensor(const Model&, int, int64_t, int64_t)>;

struct Comparison {
  double largest = 0;       // largest relative difference over every parameter
  std::vector<Tensor> dp;   // the data-parallel model's parameters after training
  std::vector<Tensor> ref;  // the single-process model's
};

// Trains two copies of the same model for `steps` Adam steps with gradient clipping at 1.0: one in
// this process on the whole batch (items [0, items)), one with DataParallel on this rank's share.
template <class Model>
Comparison train_both(const std::function<std::shared_ptr<Model>()>& make,
                      const LossFn<Model>& loss, int64_t items, dist::DataParallelOptions options,
                      int steps = 5) {
  manual_seed(11);
  std::shared_ptr<Model> ref = make();
  manual_seed(1000 + comm().rank());  // different on every rank: the broadcast must fix it
  std::shared_ptr<Model> par = make();
  nn::Adam ref_opt(ref->parameters(), {0.001});
  nn::Adam par_opt(par->parameters(), {0.001});
  {
    // Rank 0's initial values everywhere; the reference starts from the same ones.
    dist::DataParallel start(par->parameters(), options);
    NoGradGuard no_grad;
    std::vector<Tensor> from = par->parameters(), to = ref->parameters();
    for (size_t i = 0; i < from.size(); ++i) copy_(to[i], from[i]);
  }
  options.broadcast_parameters = false;
  dist::DataParallel dp(par->parameters(), options);
  auto [begin, end] = share(items);
  for (int step = 0; step < steps; ++step) {
    ref_opt.zero_grad();
    backward(loss(*ref, step, 0, items));
    nn::clip_grad_norm(ref->parameters(), 1.0);
    ref_opt.step();

    par_opt.zero_grad();
    dp.backward(loss(*par, step, begin, end));
    nn::clip_grad_norm(par->parameters(), 1.0);
    par_opt.step();
  }
  Comparison result{0, par->parameters(), ref->parameters()};
  for (size_t i = 0; i < result.dp.size(); ++i) {
    result.largest = std::max(result.largest, relative_difference(result.dp[i], result.ref[i]));
  }
  return result;
}

// ---- The communicator ---------------------------------------------------------------------------

TEST(Dist, WorldIsConsistent) {
  EXPECT_GE(comm().world_size(), 1);
  EXPECT_GE(comm().rank(), 0);
  EXPECT_LT(comm().rank(), comm().world_size());
  EXPECT_EQ(comm().is_distributed(), comm().world_size() > 1);
  EXPECT_EQ(comm().has_backend(), dist::launched_world_size() > 0);
  if (dist::launched_world_size() == 0) {
    EXPECT_EQ(comm().backends(), "none (world of one)");
  } else {
    EXPECT_EQ(comm().world_size(), dist::launched_world_size());
  }
}

TEST(Dist, AllReduceSumsAndAverages) {
  const int n = comm().world_size(), r = comm().rank();
  Tensor f = full({3}, r + 1.0, {DType::f32});
  comm().all_reduce(f, dist::ReduceOp::sum);
  for (float v : f.to_vector<float>()) EXPECT_EQ(v, n * (n + 1) / 2.0f);
  Tensor d = full({2, 2}, 2.0 * r, {DType::f64});
  comm().all_reduce(d, dist::ReduceOp::average);
  for (double v : d.to_vector<double>()) EXPECT_DOUBLE_EQ(v, n - 1.0);
  Tensor i = full({4}, r + 1, {DType::i64});
  comm().all_reduce(i);
  for (int64_t v : i.to_vector<int64_t>()) EXPECT_EQ(v, n * (n + 1) / 2);
  EXPECT_DOUBLE_EQ(comm().all_reduce_value(r + 0.5), n * n / 2.0);
}

TEST(Dist, AverageOfIntegersIsAnError) {
  Tensor i = zeros({2}, {DType::i32});
  try {
    comm().all_reduce(i, dist::ReduceOp::average);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("integers are summed"), std::string::npos) << e.what();
  }
}

TEST(Dist, BroadcastCopiesRootEverywhere) {
  Tensor t = full({5}, 10.0 + comm().rank(), {DType::f32});
  comm().broadcast(t, 0);
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 10.0f);
  comm().barrier();
}

// ---- Data parallelism: N ranks on shares equal one process on the whole batch ------------------

struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> a, b, c, unused;
  Mlp() {
    a = register_module("a", std::make_shared<nn::Linear>(4, 16));
    b = register_module("b", std::make_shared<nn::Linear>(16, 3));
    c = register_module("c", std::make_shared<nn::Linear>(4, 3));
    unused = register_module("unused", std::make_shared<nn::Linear>(2, 2));
  }
};

// Batch `step`: 8 points x [8, 4] and targets y [8, 3], the same on every rank.
std::pair<Tensor, Tensor> mlp_batch(int step) {
  manual_seed(500 + step);
  return {uniform({8, 4}, -1, 1), uniform({8, 3}, -1, 1)};
}

// Mean squared error over items [begin, end) of 8, as an average of equal shares. Items [0, 4)
// also go through `c`: on the second of two ranks `c` gets no gradient at all, and `unused`
// never does on any rank.
Tensor mlp_loss(const Mlp& m, int step, int64_t begin, int64_t end) {
  auto [x, y] = mlp_batch(step);
  x = narrow(x, begin, end - begin);
  y = narrow(y, begin, end - begin);
  Tensor out = m.b->forward(tanh(m.a->forward(x)));
  Tensor loss = mean(mul(sub(out, y), sub(out, y)));
  int64_t with_c = std::min<int64_t>(end, 4) - begin;
  if (with_c > 0) {
    Tensor cx = m.c->forward(narrow(x, 0, with_c));
    loss = add(loss, mul(sum(mul(cx, cx)), 1.0 / ((end - begin) * 3)));
  }
  return loss;
}

TEST(DataParallel, MlpMatchesOneProcessOnTheWholeBatch) {
  Comparison c = train_both<Mlp>([] { return std::make_shared<Mlp>(); }, mlp_loss, 8, {});
  RecordProperty("largest_relative_difference", std::to_string(c.largest));
  std::printf("rank %d: MLP, 5 Adam steps: largest relative difference %.3g\n", comm().rank(),
              c.largest);
  EXPECT_LT(c.largest, 1e-5);
}

// The same on a GPU: the gradients go through NCCL (under mpirun; alone, the world of one).
TEST(DataParallel, MlpOnCudaMatchesOneProcess) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device is visible (or no CUDA in this build)";
  const Device device = Device::cuda(comm().local_rank());
  auto make = [device] {
    auto m = std::make_shared<Mlp>();
    m->to(device);
    return m;
  };
  LossFn<Mlp> on_device = [device](const Mlp& m, int step, int64_t begin, int64_t end) {
    auto [x, y] = mlp_batch(step);
    x = to(narrow(x, begin, end - begin), device);
    y = to(narrow(y, begin, end - begin), device);
    Tensor out = m.b->forward(tanh(m.a->forward(x)));
    return mean(mul(sub(out, y), sub(out, y)));
  };
  Comparison c = train_both<Mlp>(make, on_device, 8, {});
  std::printf("rank %d: MLP on %s (%s), 5 Adam steps: largest relative difference %.3g\n",
              comm().rank(), device.str().c_str(), comm().backends().c_str(), c.largest);
  EXPECT_LT(c.largest, 1e-5);
}

TEST(DataParallel, ParameterWithoutGradientStaysWithoutOne) {
  Comparison c = train_both<Mlp>([] { return std::make_shared<Mlp>(); }, mlp_loss, 8, {});
  // `c` had a gradient only on rank 0, `unused` on no rank: only `c` is trained, on every rank.
  Mlp probe;
  auto names = probe.named_parameters();
  for (size_t i = 0; i < names.size(); ++i) {
    bool is_unused = names[i].first.rfind("unused.", 0) == 0;
    EXPECT_EQ(c.dp[i].grad().defined(), !is_unused) << names[i].first;
    EXPECT_EQ(c.ref[i].grad().defined(), !is_unused) << names[i].first;
  }
}

// A rank with no data this step (a global batch with fewer sentences than ranks, in kiln train)
// takes part through reduce_gradients() alone; one that accumulated over several backward passes
// of its own reduces the sum. Either way every rank ends with the sum of what all of them had.
TEST(DataParallel, ReduceGradientsWithoutABackwardOfItsOwn) {
  Tensor w = from_vector(std::vector<float>{1, 2, 3}, {3});
  w.set_requires_grad(true);
  dist::DataParallelOptions summed;
  summed.reduce = dist::ReduceOp::sum;
  dist::DataParallel dp({w}, summed);
  const int rank = comm().rank(), ranks = comm().world_size();
  // Rank 0 runs two backward passes (accumulating 2w + 3w = 5w); the others none.
  if (rank == 0) {
    backward(sum(w * w));
    backward(sum(w * w * 1.5));
  }
  dp.reduce_gradients();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{5, 10, 15}));
  // Then every rank has a gradient: the reduction sums them (each 2w).
  w.set_grad(Tensor());
  backward(sum(w * w));
  dp.reduce_gradients();
  float n = static_cast<float>(comm().has_backend() ? ranks : 1);
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{2 * n, 4 * n, 6 * n}));
}

TEST(DataParallel, BucketSizesGiveTheSameResult) {
  auto make = [] { return std::make_shared<Mlp>(); };
  dist::DataParallelOptions one, some, many;
  one.bucket_bytes = size_t(64) << 20;
  some.bucket_bytes = 300;
  many.bucket_bytes = 1;
  Mlp probe;
  dist::DataParallel count_one(probe.parameters(), one), count_some(probe.parameters(), some),
      count_many(probe.parameters(), many);
  EXPECT_EQ(count_one.num_buckets(), 1u);
  EXPECT_GT(count_some.num_buckets(), 1u);
  EXPECT_LT(count_some.num_buckets(), probe.parameters().size());
  EXPECT_EQ(count_many.num_buckets(), probe.parameters().size());
  Comparison a = train_both<Mlp>(make, mlp_loss, 8, one);
  Comparison b = train_both<Mlp>(make, mlp_loss, 8, some);
  Comparison c = train_both<Mlp>(make, mlp_loss, 8, many);
  for (size_t i = 0; i < a.dp.size(); ++i) {
    // The same sums of the same numbers, whatever the packing: bit for bit.
    EXPECT_EQ(relative_difference(a.dp[i], b.dp[i]), 0.0) << "parameter " << i;
    EXPECT_EQ(relative_difference(a.dp[i], c.dp[i]), 0.0) << "parameter " << i;
  }
  EXPECT_LT(std::max({a.largest, b.largest, c.largest}), 1e-5);
  dist::DataParallelOptions after_backward = some;
  after_backward.overlap = false;
  Comparison d = train_both<Mlp>(make, mlp_loss, 8, after_backward);
  for (size_t i = 0; i < a.dp.size(); ++i) {
    EXPECT_EQ(relative_difference(a.dp[i], d.dp[i]), 0.0) << "parameter " << i << ", no overlap";
  }
}

// A 2-layer LSTM or GRU over a padded batch of 6 sequences (lengths 5 3 4 2 5 1): the loss is a
// sum over real steps divided by the GLOBAL number of real steps, so the ranks' losses add up
// (ReduceOp::sum) to the whole batch's, although the shares hold different numbers of steps.
struct RnnStack : nn::Module {
  std::shared_ptr<nn::Recurrent> rnn;
  explicit RnnStack(nn::CellType cell) {
    nn::RnnOptions o;
    o.input_size = 3;
    o.hidden_size = 8;
    o.num_layers = 2;
    rnn = register_module("rnn", std::make_shared<nn::Recurrent>(cell, o));
  }
};

Tensor rnn_loss(const RnnStack& m, int step, int64_t begin, int64_t end) {
  const std::vector<int64_t> all_lengths = {5, 3, 4, 2, 5, 1};
  const int64_t T = 5, B = 6, n = end - begin;
  manual_seed(700 + step);
  std::vector<float> x = uniform({T, B, 3}, -1, 1).to_vector<float>();
  std::vector<float> mine(T * n * 3), mask(T * n, 0.0f);
  std::vector<int64_t> lengths(all_lengths.begin() + begin, all_lengths.begin() + end);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      for (int k = 0; k < 3; ++k) mine[(t * n + j) * 3 + k] = x[(t * B + begin + j) * 3 + k];
      mask[t * n + j] = t < lengths[j] ? 1.0f : 0.0f;
    }
  }
  int64_t global_steps = 0;
  for (int64_t l : all_lengths) global_steps += l;
  nn::RnnState s =
      m.rnn->forward(from_vector(mine, {T, n, 3}), Tensor(), Tensor(), from_vector(lengths, {n}));
  Tensor per_step = sum(mul(s.y, s.y), 2);  // [T, n]; padded steps are 0
  Tensor loss = sum(mul(per_step, from_vector(mask, {T, n})));
  return mul(loss, 1.0 / global_steps);
}

TEST(DataParallel, LstmAndGruStacksMatchOneProcess) {
  dist::DataParallelOptions sum;
  sum.reduce = dist::ReduceOp::sum;
  for (nn::CellType cell : {nn::CellType::lstm, nn::CellType::gru}) {
    Comparison c =
        train_both<RnnStack>([cell] { return std::make_shared<RnnStack>(cell); }, rnn_loss, 6, sum);
    std::printf("rank %d: %s stack, 5 Adam steps: largest relative difference %.3g\n",
                comm().rank(), cell == nn::CellType::lstm ? "LSTM" : "GRU", c.largest);
    EXPECT_LT(c.largest, 1e-5) << (cell == nn::CellType::lstm ? "LSTM" : "GRU");
  }
}

// The translator's model with attention on a padded batch: the mean cross-entropy per real target
// token of the share, rescaled to the global token count.
struct Translator : nn::Module {
  std::shared_ptr<seq2seq::Seq2Seq> model;
  Translator() {
    seq2seq::ModelConfig config;
    config.source_vocab = config.target_vocab = 20;
    config.embed_size = 8;
    config.hidden_size = 12;
    config.num_layers = 2;
    config.dropout = 0;
    config.attention = seq2seq::Attention::bahdanau;
    model = register_module("model", std::make_shared<seq2seq::Seq2Seq>(config));
  }
};

Tensor translator_loss(const Translator& m, int step, int64_t begin, int64_t end) {
  const std::vector<int64_t> source_lengths = {6, 2, 5, 3, 6, 4},
                             target_lengths = {5, 3, 6, 2, 4, 6};
  const int64_t S = 6, T = 6, B = 6, n = end - begin;
  manual_seed(900 + step);
  std::vector<double> u = uniform({S + T, B}, 0, 1, DType::f64).to_vector<double>();
  std::vector<int64_t> src(S * n, 0), tin(T * n, 0), tout(T * n, 0), len(n);
  std::vector<float> mask(T * n, 0.0f);
  int64_t local = 0, global = 0;
  for (int64_t l : target_lengths) global += l;
  for (int64_t j = 0; j < n; ++j) {
    int64_t b = begin + j;
    len[j] = source_lengths[b];
    for (int64_t s = 0; s < len[j]; ++s) src[s * n + j] = 4 + int64_t(u[s * B + b] * 16);
    for (int64_t t = 0; t < target_lengths[b]; ++t) {
      tout[t * n + j] = t + 1 == target_lengths[b] ? 3 : 4 + int64_t(u[(S + t) * B + b] * 16);
      tin[t * n + j] = t == 0 ? 2 : tout[(t - 1) * n + j];
      mask[t * n + j] = 1.0f;
    }
    local += target_lengths[b];
  }
  seq2seq::EncoderOutput enc = m.model->encode(from_vector(src, {S, n}), from_vector(len, {n}));
  Tensor logits = m.model->decode_teacher(enc, from_vector(tin, {T, n}));
  Tensor loss = m.model->loss(logits, from_vector(tout, {T, n}), from_vector(mask, {T, n}));
  return mul(loss, double(local) / double(global));
}

TEST(DataParallel, Seq2SeqWithAttentionMatchesOneProcess) {
  dist::DataParallelOptions sum;
  sum.reduce = dist::ReduceOp::sum;
  Comparison c = train_both<Translator>([] { return std::make_shared<Translator>(); },
                                        translator_loss, 6, sum);
  std::printf("rank %d: Seq2Seq + attention, 5 Adam steps: largest relative difference %.3g\n",
              comm().rank(), c.largest);
  EXPECT_LT(c.largest, 1e-5);
}

TEST(DataParallel, RejectsAParameterListedTwice) {
  Mlp m;
  std::vector<Tensor> params = m.parameters();
  params.push_back(params[0]);
  try {
    dist::DataParallel dp(params);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same tensor as parameter 0"), std::string::npos)
        << e.what();
  }
}

// Run only by the DistFailure ctest entries (tests/CMakeLists.txt), which check what the job
// printed: rank 1 dies (KILN_TEST_RANK_FAILS=die) or hangs (=hang) before an all_reduce that
// rank 0 waits in. Neither may hang the job.
TEST(DistFailure, APeerThatDiesOrHangsTakesTheJobDown) {
  const char* mode = std::getenv("KILN_TEST_RANK_FAILS");
  if (!mode || comm().world_size() < 2) GTEST_SKIP() << "run by the DistFailure ctest entries";
  if (comm().rank() == 1) {
    if (std::string(mode) == "die") std::_Exit(3);
    std::this_thread::sleep_for(std::chrono::seconds(600));
  }
  Tensor t = ones({4});
  comm().all_reduce(t);
  FAIL() << "the all_reduce returned although rank 1 never joined it";
}

}  // namespace
}  // namespace kiln
