// The CPU thread policy (kernels/threads.h): set_num_threads round trip, the environment's say
// (KILN_NUM_THREADS, OMP_NUM_THREADS), --threads on the CLI, and results that do not depend on the
// thread count.
#include <cstdlib>
#include <functional>

#include "cli_util.h"
#include "kernels/rnn_steps.h"
#include "kernels/threads.h"
#include "models/data/text_file.h"
#include "test_util.h"

namespace kiln {
namespace {

// Sets an environment variable for one scope, then puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
    set_num_threads(0);  // the policy re-reads the environment
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST(Threads, SetNumThreadsRoundTrip) {
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  EXPECT_EQ(num_threads_source(), "set_num_threads");
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(0);  // back to the environment or the automatic count
  EXPECT_NE(num_threads_source(), "set_num_threads");
  EXPECT_GE(num_threads(), 1);
  EXPECT_CONTAINS(testing::error_of([&] { set_num_threads(-1); }),
                  "-1 threads is out of range [0, 1024]");
  EXPECT_CONTAINS(testing::error_of([&] { set_num_threads(kMaxThreads + 1); }), "out of range");
}

TEST(Threads, EnvironmentIsRespected) {
  {
    ScopedEnv kiln("KILN_NUM_THREADS", "3");
    set_num_threads(0);
    EXPECT_EQ(num_threads(), 3);
    EXPECT_EQ(num_threads_source(), "KILN_NUM_THREADS");
    set_num_threads(2);  // the program's own choice wins over the environment
    EXPECT_EQ(num_threads(), 2);
  }
  {
    ScopedEnv kiln("KILN_NUM_THREADS", "lots");
    set_num_threads(4);  // a count given by the program is not overridden, so not checked
    EXPECT_EQ(num_threads(), 4);
    EXPECT_CONTAINS(testing::error_of([&] { set_num_threads(0); }),
                    "KILN_NUM_THREADS: expected a thread count in [0, 1024] (0: automatic), got "
                    "'lots'");
  }
  {
    // ctest runs the suite with OMP_NUM_THREADS=2 (tests/CMakeLists.txt); OpenMP read it at load.
    ScopedEnv kiln("KILN_NUM_THREADS", "0");  // 0: no fixed count, so OMP_NUM_THREADS decides
    set_num_threads(0);
    const char* omp = std::getenv("OMP_NUM_THREADS");
    if (omp && *omp) {
      EXPECT_EQ(num_threads_source(), "OMP_NUM_THREADS");
      EXPECT_EQ(num_threads(), std::atoi(omp));
    } else {
      EXPECT_EQ(num_threads_source(), "automatic");
      EXPECT_GE(num_threads(), 1);
    }
  }
}

// The cap StepThreadTuner puts on the automatic count: it caps only that count.
TEST(Threads, AutomaticLimitCapsOnlyTheAutomaticCount) {
  ScopedEnv kiln("KILN_NUM_THREADS", nullptr), omp("OMP_NUM_THREADS", nullptr);
  set_num_threads(0);
  ASSERT_EQ(num_threads_source(), "automatic");
  const int automatic = automatic_threads_uncapped();
  EXPECT_GE(automatic, 1);
  limit_automatic_threads(1);
  EXPECT_EQ(num_threads(), 1);
  EXPECT_EQ(automatic_threads_uncapped(), automatic);
  set_num_threads(3);  // a fixed count is never capped
  EXPECT_EQ(num_threads(), 3);
  EXPECT_EQ(automatic_threads_uncapped(), 0);
  set_num_threads(0);
  limit_automatic_threads(0);
  EXPECT_EQ(num_threads(), automatic_threads_uncapped());
  EXPECT_CONTAINS(testing::error_of([&] { limit_automatic_threads(-1); }), "out of range");
  {
    StepThreadTuner tuner;  // a tuner lifts its cap when it goes
    tuner.begin();
    tuner.end();
  }
  EXPECT_EQ(num_threads(), automatic_threads_uncapped());
}

// StepThreadTuner's decisions on made-up timings: `ms(limit)` is a repetition's time under the
// tuner's current limit (0: all threads, 1: one). Returns the repetitions run under limit 1.
template <class Ms> int run_tuner(StepThreadTuner& tuner, int repetitions, const Ms& ms) {
  int on_one = 0;
  for (int i = 0; i < repetitions; ++i) {
    on_one += tuner.limit() == 1;
    tuner.observe(ms(tuner.limit()) * 1e-3, 1);
  }
  return on_one;
}

TEST(Threads, TunerTakesOneThreadWhileTwoRunSlower) {
  StepThreadTuner tuner;
  // A quiet host: two threads 1.4 ms, one 2.0. Over 60 s of steps one thread runs only in the
  // scheduled probes, which back off: under 1% of the steps.
  const int quiet = 60000 / 1.4;
  const int probes = run_tuner(tuner, quiet, [](int limit) { return limit ? 2.0 : 1.4; });
  EXPECT_EQ(tuner.limit(), 0);
  EXPECT_EQ(tuner.switches(), 0);
  EXPECT_GT(probes, 0);
  EXPECT_LT(probes, quiet / 100);
  // A slow phase (two threads 3.2 ms, one still 2.0): one thread within a few windows.
  int steps = 0;
  while (tuner.switches() == 0 && steps < 200) {
    run_tuner(tuner, 1, [](int limit) { return limit ? 2.0 : 3.2; });
    ++steps;
  }
  EXPECT_EQ(tuner.switches(), 1);
  EXPECT_EQ(tuner.limit(), 1);
  EXPECT_LE(steps, 3 * 16 + 2);
  // It stays there while the phase lasts (probes of two threads lose) ...
  run_tuner(tuner, 3000, [](int limit) { return limit ? 2.0 : 3.2; });
  EXPECT_EQ(tuner.limit(), 1);
  // ... and goes back to two threads within the probe interval once the phase ends.
  steps = 0;
  while (tuner.switches() == 1 && steps < 40000) {
    run_tuner(tuner, 1, [](int limit) { return limit ? 2.0 : 1.4; });
    ++steps;
  }
  EXPECT_EQ(tuner.switches(), 2);
  EXPECT_EQ(tuner.limit(), 0);
  EXPECT_LT(steps * 2.0, 33000) << steps;  // within the longest interval, 32 s
}

TEST(Threads, TunerProbesEarlyWhenAProcessStartsSlow) {
  // Slow from the first step: no faster window of its own to compare with, so the first probe
  // comes after two windows (16 steps each here), not after the 1 s interval.
  StepThreadTuner tuner;
  int steps = 0;
  while (tuner.switches() == 0 && steps < 1000) {
    run_tuner(tuner, 1, [](int limit) { return limit ? 2.0 : 3.2; });
    ++steps;
  }
  EXPECT_EQ(tuner.limit(), 1);
  EXPECT_LE(steps, 2 + 3 * 16 + 2) << steps;  // warm-up, 2 windows, a skipped step, the probe
  EXPECT_NEAR(tuner.switched_from(), 3.2e-3, 1e-12);
  EXPECT_NEAR(tuner.switched_to(), 2.0e-3, 1e-12);
}

TEST(Threads, TunerComparesTimePerUnitOfWork) {
  // Batches of 1x and 3x the tokens, taking 1x and 3x the time: no slow phase, no switch.
  StepThreadTuner tuner;
  int i = 0, on_one = 0;
  for (; i < 20000; ++i) {
    const double tokens = i % 2 ? 3000 : 1000;
    on_one += tuner.limit() == 1;
    tuner.observe((tuner.limit() ? 2.0 : 1.4) * tokens / 1000 * 1e-3, tokens);
  }
  EXPECT_EQ(tuner.switches(), 0);
  EXPECT_LT(on_one, i / 100);
}

TEST(Threads, ParseNumThreads) {
  EXPECT_EQ(parse_num_threads("4", "--threads"), 4);
  EXPECT_EQ(parse_num_threads("0", "--threads"), 0);
  for (const char* bad : {"", "-1", "1025", "2x", "1.5", " "}) {
    EXPECT_CONTAINS(testing::error_of([&] { parse_num_threads(bad, "KILN_NUM_THREADS"); }),
                    "KILN_NUM_THREADS")
        << bad;
  }
}

// kiln's own CPU kernels at sizes past every parallel grain (logits [640, 300]: cross-entropy
// forward and backward, softmax, a column sum, pointwise math, clipping) give the same bits on 1
// and on 2 threads: no kernel splits a sum across threads. OpenBLAS's GEMMs are not in this list:
// its single- and multi-threaded paths round differently (a [640, 64] x [64, 300] sgemm differed
// in 6% of its elements here), so a run is bit-reproducible at a fixed thread count (README).
TEST(Threads, KernelsAreIdenticalOnOneAndTwoThreads) {
  auto run = [](int threads) {
    set_num_threads(threads);
    manual_seed(5);
    const int64_t N = 640, V = 300;
    Tensor logits = uniform({N, V}, -3, 3);
    logits.set_requires_grad(true);
    std::vector<double> u = uniform({N}, 0, V, DType::f64).to_vector<double>();
    std::vector<int64_t> targets(N);
    for (int64_t i = 0; i < N; ++i) targets[i] = static_cast<int64_t>(u[i]);
    Tensor loss = add(cross_entropy(logits, from_vector(targets, {N})),
                      mean(mul(tanh(logits), sigmoid(logits))));
    backward(loss);
    nn::clip_grad_norm({logits}, 1e-3);
    std::vector<std::vector<float>> out;
    for (const Tensor& t : {loss, logits.grad(), softmax(logits), sum(logits, 0)}) {
      out.push_back(t.to_vector<float>());
    }
    return out;
  };
  const auto one = run(1), two = run(2);
  set_num_threads(0);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_EQ(one[i], two[i]) << "output " << i;
}

// The optimizers' update runs as one region over all the parameters' elements, each thread an
// equal share that may cut a tensor anywhere (kernels/multi_tensor.h): Adam over tensors of
// 10,000, 7, 30,011 and 1 elements (past kMultiTensorGrain in all, not in any one) gives the same
// bits on 1, 2 and 3 threads.
TEST(Threads, OptimizerUpdateIsIdenticalOnOneTwoAndThreeThreads) {
  auto run = [](int threads) {
    set_num_threads(threads);
    manual_seed(3);
    std::vector<Tensor> params;
    for (int64_t n : {10000, 7, 30011, 1})
      params.push_back(uniform({n}, -1, 1).set_requires_grad(true));
    nn::Adam opt(params, nn::AdamOptions{0.01});
    for (int step = 0; step < 3; ++step) {
      for (Tensor& p : params) p.set_grad(uniform(p.shape(), -1, 1));
      opt.step();
    }
    std::vector<std::vector<float>> out;
    for (const Tensor& p : params) out.push_back(p.to_vector<float>());
    return out;
  };
  const auto one = run(1), two = run(2), three = run(3);
  set_num_threads(0);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one, three);
}

// On the CPU an RNN layer's time loop runs its batch as blocks of rows, one per thread
// (kernels/rnn_steps.h). A batch of 37 padded sequences on 3 threads (blocks of 12, 12 and 13 rows,
// the last one partly padding) gives the outputs and gradients of the whole batch on one thread:
// LSTM and GRU, both directions, in f32 and under bf16 autocast (a per-thread setting that the
// blocks' threads must take from the caller).
TEST(Threads, RnnBatchBlocksMatchTheWholeBatch) {
  const int64_t T = 12, B = 37, I = 16, H = 32;
  for (bool bf16 : {false, true}) {
    for (bool lstm : {true, false}) {
      for (bool reverse : {false, true}) {
        const int64_t G = (lstm ? 4 : 3) * H;
        auto run = [&](int threads) {
          set_num_threads(threads);
          AutocastScope autocast(bf16 ? DType::bf16 : DType::f32);
          EXPECT_EQ(kernels::batch_blocks(Device::cpu(), T, kernels::recurrent_gemm(B, G, H, true)),
                    threads);
          manual_seed(11);
          Tensor x = uniform({T, B, I}, -1, 1).set_requires_grad(true);
          Tensor h0 = uniform({B, H}, -1, 1).set_requires_grad(true);
          Tensor c0 = uniform({B, H}, -1, 1).set_requires_grad(true);
          RnnWeights w{uniform({G, I}, -0.3, 0.3).set_requires_grad(true),
                       uniform({G, H}, -0.3, 0.3).set_requires_grad(true),
                       uniform({G}, -0.3, 0.3).set_requires_grad(true),
                       uniform({G}, -0.3, 0.3).set_requires_grad(true)};
          std::vector<float> mask(T * B);  // sequence b is 1 + (5 b) % T steps long
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t b = 0; b < B; ++b) mask[t * B + b] = t < 1 + (5 * b) % T ? 1.0f : 0.0f;
          }
          Tensor m = from_vector(mask, {T, B});
          RnnOutput o =
              lstm ? lstm_layer(x, h0, c0, w, m, reverse) : gru_layer(x, h0, w, m, reverse);
          Tensor dy = uniform({T, B, H}, -1, 1), dh = uniform({B, H}, -1, 1);
          Tensor loss = add(sum(mul(o.y, dy)), sum(mul(o.h_n, dh)));
          if (lstm) loss = add(loss, sum(o.c_n));
          backward(loss);
          std::vector<Tensor> out{o.y,           o.h_n,         x.grad(),      h0.grad(),
                                  w.w_ih.grad(), w.w_hh.grad(), w.b_ih.grad(), w.b_hh.grad()};
          if (lstm) out.insert(out.end(), {o.c_n, c0.grad()});
          return out;
        };
        const std::vector<Tensor> whole = run(1), blocks = run(3);
        set_num_threads(0);
        ASSERT_EQ(whole.size(), blocks.size());
        for (size_t i = 0; i < whole.size(); ++i) {
          EXPECT_TRUE(testing::all_close(blocks[i], whole[i], 1e-6, 1e-5))
              << (lstm ? "lstm" : "gru") << (reverse ? " reverse" : "") << (bf16 ? " bf16" : "")
              << ", output " << i;
        }
      }
    }
  }
}

// A walk of one step (a decoding step) whose product threads by itself and whose blocks would be
// few rows runs as one block, the product splitting W_hh's columns; walks of many steps, small
// products and blocks of many rows keep their blocks.
TEST(Threads, OneLargeStepOfFewRowsRunsAsTheWholeBatch) {
  set_num_threads(2);
  const Device cpu = Device::cpu();
  EXPECT_EQ(kernels::batch_blocks(cpu, 1, kernels::recurrent_gemm(64, 1536, 512, true)), 1);
  EXPECT_EQ(kernels::batch_blocks(cpu, 2, kernels::recurrent_gemm(64, 1536, 512, true)), 2);
  EXPECT_EQ(kernels::batch_blocks(cpu, 30, kernels::recurrent_gemm(64, 1536, 512, false)), 2);
  EXPECT_EQ(kernels::batch_blocks(cpu, 1, kernels::recurrent_gemm(320, 1536, 512, true)), 2);
  EXPECT_EQ(kernels::batch_blocks(cpu, 1, kernels::recurrent_gemm(320, 96, 32, true)), 2);
  set_num_threads(0);
}

// A step multiplies only its real rows (kernels/rnn_steps.h, RealRowsProduct): packed when padding
// is scattered among them, in place when they lead the block or padding is rare among them. Each
// way, on one thread and as three blocks, every sequence of a padded batch of 37 gets the outputs
// and gradients it gets alone on its real steps (f64): LSTM and GRU, both directions.
TEST(Threads, RnnSkipsPaddedRowsWithoutChangingAnything) {
  const int64_t T = 12, B = 37, I = 16, H = 32;
  auto sequences = [](const Tensor& x, int64_t b, int64_t n) {  // [T, n, F]: x[:, b:b+n], a copy
    return transpose(narrow(transpose(x, 0, 1), b, n), 0, 1);
  };
  std::vector<std::pair<const char*, std::function<int64_t(int64_t)>>> lengths = {
      {"scattered", [&](int64_t b) { return 1 + (5 * b) % T; }},         // packed
      {"sorted", [&](int64_t b) { return T - b * (T - 1) / (B - 1); }},  // leading rows
      {"one short", [&](int64_t b) { return b == 5 ? 3 : T; }},          // little padding
  };
  for (const auto& [pattern, length] : lengths) {
    for (bool lstm : {true, false}) {
      for (bool reverse : {false, true}) {
        for (int threads : {1, 3}) {
          set_num_threads(threads);
          const int64_t G = (lstm ? 4 : 3) * H;
          manual_seed(12);
          auto u = [](Shape shape, double a) { return uniform(shape, -a, a, DType::f64); };
          const Tensor x = u({T, B, I}, 1), h0 = u({B, H}, 1), c0 = u({B, H}, 1);
          const Tensor dy = u({T, B, H}, 1), dh = u({B, H}, 1);
          RnnWeights w{u({G, I}, 0.3), u({G, H}, 0.3), u({G}, 0.3), u({G}, 0.3)};
          for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) t->set_requires_grad(true);
          // loss = sum(y dy) + sum(h_n dh) (+ sum(c_n)) over rows [b, b + n) and steps [0, len).
          auto run = [&](int64_t b, int64_t n, int64_t len, const Tensor& mask) {
            for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) t->set_grad(Tensor());
            Tensor xs = narrow(sequences(x, b, n), 0, len).set_requires_grad(true);
            Tensor hs = clone(narrow(h0, b, n)).set_requires_grad(true);
            Tensor cs = clone(narrow(c0, b, n)).set_requires_grad(true);
            RnnOutput o = lstm ? lstm_layer(xs, hs, cs, w, mask, reverse)
                               : gru_layer(xs, hs, w, mask, reverse);
            Tensor loss = add(sum(mul(o.y, narrow(sequences(dy, b, n), 0, len))),
                              sum(mul(o.h_n, narrow(dh, b, n))));
            if (lstm) loss = add(loss, sum(o.c_n));
            backward(loss);
            std::vector<Tensor> out{o.y, o.h_n, xs.grad(), hs.grad()};
            if (lstm) out.insert(out.end(), {o.c_n, cs.grad()});
            for (Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) out.push_back(t->grad());
            return out;
          };
          std::vector<double> mask(T * B);
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t b = 0; b < B; ++b) mask[t * B + b] = t < length(b) ? 1.0 : 0.0;
          }
          const std::vector<Tensor> batch = run(0, B, T, from_vector(mask, {T, B}));
          std::vector<Tensor> weight_grads(4);  // summed over the sequences run alone
          for (int64_t b = 0; b < B; ++b) {
            const std::vector<Tensor> alone = run(b, 1, length(b), Tensor());
            const std::string where = std::string(pattern) + (lstm ? " lstm" : " gru") +
                                      (reverse ? " reverse" : "") + ", " + std::to_string(threads) +
                                      " threads, sequence " + std::to_string(b) + ", output ";
            for (size_t i = 0; i + 4 < alone.size(); ++i) {
              // y and dx: its real steps; the rest: [1, ...] rows of [B, ...].
              Tensor mine = i == 0 || i == 2 ? narrow(sequences(batch[i], b, 1), 0, length(b))
                                             : narrow(batch[i], b, 1);
              EXPECT_TRUE(testing::all_close(mine, alone[i], 1e-12, 1e-12)) << where << i;
            }
            for (size_t i = 0; i < 4; ++i) {
              const Tensor& g = alone[alone.size() - 4 + i];
              weight_grads[i] = b == 0 ? g : add(weight_grads[i], g);
            }
          }
          for (size_t i = 0; i < 4; ++i) {
            EXPECT_TRUE(
                testing::all_close(batch[batch.size() - 4 + i], weight_grads[i], 1e-10, 1e-10))
                << pattern << (lstm ? " lstm" : " gru") << (reverse ? " reverse" : "") << ", "
                << threads << " threads, weight gradient " << i;
          }
        }
      }
    }
  }
  set_num_threads(0);
}

TEST(CliBinary, ThreadsFlagIsRangeChecked) {
  std::filesystem::path dir = testing::temp_dir("cli_threads");
  std::string log = (dir / "log.txt").string();
  EXPECT_NE(testing::run_kiln("train --task reverse --threads -1", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--threads");
  EXPECT_NE(testing::run_kiln("translate --checkpoint x --threads 5000", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--threads");
  EXPECT_NE(testing::run_kiln("eval --checkpoint x --threads two", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--threads");
  EXPECT_NE(testing::run_kiln("serve --checkpoint x --compute-threads -2", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--compute-threads");
  {
    ScopedEnv bad("KILN_NUM_THREADS", "-3");  // named before any work starts
    EXPECT_NE(testing::run_kiln("translate --checkpoint x", log), 0);
    EXPECT_CONTAINS(data::read_text_file("test", log), "KILN_NUM_THREADS: expected a thread count");
  }
  // A good value runs, and the header names the count and where it came from.
  EXPECT_EQ(testing::run_kiln("train --task reverse --task-size 100 --epochs 1 --hidden 8 "
                              "--embed 8 --layers 1 --threads 1 --out " +
                                  (dir / "run").string(),
                              log),
            0)
      << data::read_text_file("test", log);
  EXPECT_CONTAINS(data::read_text_file("test", log), "on cpu, 1 thread (set_num_threads)");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln
