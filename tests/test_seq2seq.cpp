// The Seq2Seq model and its search: shapes, padding invariance, beam width 1 = greedy, a toy
// model where beam search finds the sequence greedy misses, and a model that learns to reverse.
#include <cmath>

#include "models/seq2seq/search.h"
#include "test_util.h"

namespace kiln {
namespace {

using seq2seq::Attention;
using seq2seq::ModelConfig;
using seq2seq::Seq2Seq;

ModelConfig small_config(Attention attention, nn::CellType cell, bool bidirectional) {
  ModelConfig c;
  c.source_vocab = 12;
  c.target_vocab = 10;
  c.embed_size = 6;
  c.hidden_size = 8;
  c.num_layers = 2;
  c.dropout = 0.0;
  c.cell = cell;
  c.bidirectional = bidirectional;
  c.attention = attention;
  return c;
}

Tensor ids(std::vector<int64_t> values, int64_t steps, int64_t batch) {
  return from_vector(values, {steps, batch});
}

TEST(Seq2Seq, ShapesForEveryVariant) {
  for (Attention attention : {Attention::none, Attention::bahdanau, Attention::luong_general}) {
    for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
      for (bool bidirectional : {false, true}) {
        Seq2Seq model(small_config(attention, cell, bidirectional));
        Tensor source = ids({4, 5, 6, 7, 8, 0}, 3, 2), lengths = from_vector<int64_t>({3, 2}, {2});
        seq2seq::EncoderOutput enc = model.encode(source, lengths);
        // The keys and padding mask are made for attention alone.
        EXPECT_EQ(enc.keys.defined(), attention != Attention::none);
        EXPECT_EQ(enc.source_pad.defined(), attention != Attention::none);
        if (attention != Attention::none) {
          EXPECT_EQ(enc.keys.shape(), (Shape{2, 3, bidirectional ? 16 : 8}));
        }
        EXPECT_EQ(enc.init_h.shape(), (Shape{2, 2, 8}));
        Tensor logits = model.decode_teacher(enc, ids({2, 2, 4, 5}, 2, 2));
        EXPECT_EQ(logits.shape(), (Shape{2, 2, 10}));
        Tensor loss = model.loss(logits, ids({4, 5, 3, 3}, 2, 2), ones({2, 2}));
        backward(loss);
        EXPECT_TRUE(model.state_dict()["decoder.dense.weight"].grad().defined());
      }
    }
  }
}

TEST(Seq2Seq, ParameterNames) {
  Seq2Seq model(small_config(Attention::bahdanau, nn::CellType::gru, true));
  nn::StateDict s = model.state_dict();
  for (const char* name :
       {"encoder.embedding.weight", "encoder.rnn.weight_ih_l0_reverse", "bridge.weight",
        "decoder.rnn.weight_hh_l1", "decoder.attention.w_v.weight", "decoder.dense.bias"}) {
    EXPECT_TRUE(s.count(name)) << name;
  }
  EXPECT_EQ(s["decoder.rnn.weight_ih_l0"].shape(),
            (Shape{24, 6 + 16}));  // embedding + attention context
}

// A sentence padded inside a batch gives the same logits as the sentence alone.
TEST(Seq2Seq, PaddingDoesNotChangeAnyOutput) {
  for (Attention attention : {Attention::none, Attention::bahdanau}) {
    manual_seed(4);
    ModelConfig c = small_config(attention, nn::CellType::lstm, true);
    Seq2Seq model(c, DType::f64);
    model.eval();
    Tensor batch_src = ids({4, 9, 5, 10, 6, 0, 7, 0}, 4, 2),
           batch_len = from_vector<int64_t>({4, 3}, {2});
    Tensor target = ids({2, 2, 4, 4, 5, 6}, 3, 2);
    Tensor both = model.decode_teacher(model.encode(batch_src, batch_len), target);
    Tensor alone = model.decode_teacher(
        model.encode(ids({9, 10, 0}, 3, 1), from_vector<int64_t>({2}, {1})), ids({2, 4, 6}, 3, 1));
    // Sentence 1 of the batch has length 3 ({9, 10, 0} is real there: 0 is an id, not padding).
    Tensor alone3 = model.decode_teacher(
        model.encode(ids({9, 10, 0}, 3, 1), from_vector<int64_t>({3}, {1})), ids({2, 4, 6}, 3, 1));
    Tensor row1 = transpose(narrow(transpose(both, 0, 1), 1, 1), 0, 1);
    EXPECT_TRUE(testing::all_close(row1, alone3, 1e-12, 1e-10))
        << seq2seq::attention_name(attention);
    EXPECT_FALSE(
        testing::all_close(row1, alone, 1e-12, 1e-10));  // length matters: the mask is used
  }
}

// The training loss with the output layer on the real tokens alone equals the loss over the full
// logits, value and every gradient, for each decoder; host copies give the same numbers.
TEST(Seq2Seq, TeacherForcedLossOnRealTokensEqualsTheMaskedFullLoss) {
  // Padding that trails each target (the decoder skips it), and a caller's mask with a 0 before a
  // real position (every step computed: skipping it would keep that step's state).
  for (std::vector<double> mask_values :
       {std::vector<double>{1, 1, 1, 1, 1, 0}, std::vector<double>{1, 1, 0, 1, 1, 1}}) {
    for (Attention attention : {Attention::none, Attention::bahdanau}) {
      for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
        manual_seed(8);
        Seq2Seq model(small_config(attention, cell, false), DType::f64);
        Tensor source = ids({4, 9, 5, 10, 6, 0, 7, 0}, 4, 2),
               lengths = from_vector<int64_t>({4, 3}, {2});
        Tensor target_in = ids({2, 2, 4, 4, 5, 6}, 3, 2),
               target_out = ids({4, 4, 5, 6, 3, 0}, 3, 2);
        Tensor mask = from_vector<double>(mask_values, {3, 2});
        auto run = [&](int path) {
          for (Tensor p : model.parameters()) p.set_grad(Tensor());
          seq2seq::EncoderOutput enc = model.encode(source, lengths);
          Tensor loss;
          if (path == 0) {
            loss = model.loss(model.decode_teacher(enc, target_in), target_out, mask, 0.1);
          } else {
            seq2seq::HostCopies host;
            if (path == 2) host = {source, lengths, target_in, target_out, mask};
            loss = model.teacher_forced_loss(enc, target_in, target_out, mask, 1.0, 0.1, host);
          }
          backward(loss);
          std::vector<Tensor> out{loss.detach()};
          for (const Tensor& p : model.parameters()) out.push_back(clone(p.grad()));
          return out;
        };
        std::vector<Tensor> full = run(0), real = run(1), with_host = run(2);
        for (size_t k = 0; k < full.size(); ++k) {
          EXPECT_TRUE(testing::all_close(real[k], full[k], 1e-12, 1e-12))
              << seq2seq::attention_name(attention) << " value/gradient " << k;
          EXPECT_TRUE(testing::all_close(with_host[k], real[k], 0, 0));
        }
      }
    }
  }
  Seq2Seq model(small_config(Attention::none, nn::CellType::gru, false));
  seq2seq::EncoderOutput enc = model.encode(ids({4, 5}, 1, 2), from_vector<int64_t>({1, 1}, {2}));
  EXPECT_CONTAINS(
      testing::error_of([&] {
        model.teacher_forced_loss(enc, ids({2, 2}, 1, 2), ids({4, 5}, 1, 2), ones({2, 1}));
      }),
      "Seq2Seq::teacher_forced_loss: target_in i64[1, 2] on cpu, target_out i64[1, 2] "
      "on cpu and target_mask f32[2, 1] on cpu must have one shape");
}

TEST(Search, BeamOfWidthOneEqualsGreedy) {
  manual_seed(6);
  Seq2Seq model(small_config(Attention::bahdanau, nn::CellType::gru, false));
  model.eval();
  Tensor source = ids({4, 5, 6, 7, 8, 9, 10, 11, 0}, 3, 3),
         lengths = from_vector<int64_t>({3, 3, 2}, {3});
  seq2seq::SearchOptions options{2, 3, {6, 6, 6}};
  seq2seq::Seq2SeqStepper greedy_stepper(model, source, lengths);
  std::vector<seq2seq::Hypothesis> greedy = seq2seq::greedy_search(greedy_stepper, 3, options);
  seq2seq::Seq2SeqStepper beam_stepper(model, source, lengths, 1);
  auto beams = seq2seq::beam_search(beam_stepper, 3, options, {1, 0.0, 1});
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(beams[b][0].tokens, greedy[b].tokens) << "sentence " << b;
    EXPECT_NEAR(beams[b][0].log_prob, greedy[b].log_prob, 1e-5);
  }
}

// A Markov table: the next-token distribution depends on the last token only.
class TableStepper : public seq2seq::Stepper {
 public:
  explicit TableStepper(std::vector<std::vector<double>> table) : table_(std::move(table)) {}
  Tensor step(const Tensor& tokens) override {
    std::vector<int64_t> t = tokens.to_vector<int64_t>();
    std::vector<double> out;
    for (int64_t token : t) {
      for (double p : table_[token]) out.push_back(std::log(p));
    }
    return from_vector(out,
                       {static_cast<int64_t>(t.size()), static_cast<int64_t>(table_[0].size())});
  }
  void reorder(const Tensor&) override {}

 private:
  std::vector<std::vector<double>> table_;
};

TEST(Search, BeamFindsWhatGreedyMisses) {
  // Tokens: 0 pad, 1 unk, 2 bos, 3 eos, 4 A, 5 B. Greedy takes A (0.6) then ends at 0.6 * 0.35;
  // B then eos scores 0.4 * 0.9, which only a beam of 2 sees.
  const double e = 1e-6;
  std::vector<std::vector<double>> table = {{e, e, e, 0.5, 0.25, 0.25},  {e, e, e, 0.5, 0.25, 0.25},
                                            {e, e, e, e, 0.6, 0.4},       // after bos
                                            {e, e, e, 1.0, e, e},         // after eos
                                            {e, e, e, 0.35, 0.33, 0.32},  // after A
                                            {e, e, e, 0.9, 0.05, 0.05}};  // after B
  seq2seq::SearchOptions options{2, 3, {5}};
  TableStepper greedy_table(table);
  seq2seq::Hypothesis greedy = seq2seq::greedy_search(greedy_table, 1, options)[0];
  EXPECT_EQ(greedy.tokens, (std::vector<int64_t>{4, 3}));
  TableStepper beam_table(table);
  auto best = seq2seq::beam_search(beam_table, 1, options, {2, 0.0, 2})[0];
  EXPECT_EQ(best[0].tokens, (std::vector<int64_t>{5, 3}));
  EXPECT_NEAR(best[0].log_prob, std::log(0.4 * 0.9), 1e-9);
  EXPECT_EQ(best[1].tokens, (std::vector<int64_t>{4, 3}));  // n-best: the runner-up
}

TEST(Seq2Seq, LearnsToReverseShortSequences) {
  manual_seed(7);
  ModelConfig c = small_config(Attention::bahdanau, nn::CellType::gru, false);
  c.embed_size = 16;
  c.hidden_size = 32;
  c.num_layers = 1;
  Seq2Seq model(c);
  nn::Adam opt(model.parameters(), nn::AdamOptions{0.01});
  // Sources of 4 random tokens from 4..9; targets reversed, then <eos>.
  const int64_t B = 32, S = 4;
  double last = 0;
  for (int step = 0; step < 300; ++step) {
    std::vector<double> u = uniform({S * B}, 4, 10, DType::f64).to_vector<double>();
    std::vector<int64_t> src(S * B), tin((S + 1) * B), tout((S + 1) * B);
    for (int64_t b = 0; b < B; ++b) {
      tin[b] = 2;
      for (int64_t t = 0; t < S; ++t) {
        src[t * B + b] = static_cast<int64_t>(u[t * B + b]);
      }
      for (int64_t t = 0; t < S; ++t) {
        tout[t * B + b] = src[(S - 1 - t) * B + b];
        tin[(t + 1) * B + b] = tout[t * B + b];
      }
      tout[S * B + b] = 3;
    }
    opt.zero_grad();
    seq2seq::EncoderOutput enc = model.encode(ids(src, S, B), full({B}, S, DType::i64));
    Tensor loss = model.loss(model.decode_teacher(enc, ids(tin, S + 1, B)), ids(tout, S + 1, B),
                             ones({S + 1, B}));
    backward(loss);
    nn::clip_grad_norm(model.parameters(), 1.0);
    opt.step();
    last = loss.item();
  }
  EXPECT_LT(last, 0.2) << "per-token loss after 300 steps";
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// The whole model on CUDA (same weights) gives the CPU's logits, loss and gradients.
TEST(Seq2Seq, CudaMatchesCpu) {
  KILN_REQUIRE_GPU();
  for (seq2seq::Attention attention : {seq2seq::Attention::none, seq2seq::Attention::bahdanau}) {
    manual_seed(12);
    seq2seq::ModelConfig c;
    c.source_vocab = 12;
    c.target_vocab = 10;
    c.embed_size = 6;
    c.hidden_size = 8;
    c.dropout = 0.0;
    c.cell = nn::CellType::lstm;
    c.bidirectional = true;
    c.attention = attention;
    seq2seq::Seq2Seq cpu_model(c), gpu_model(c);
    gpu_model.load_state_dict(cpu_model.state_dict());
    gpu_model.to(Device::cuda());
    Tensor source = from_vector<int64_t>({4, 9, 5, 10, 6, 0, 7, 0}, {4, 2}),
           lengths = from_vector<int64_t>({4, 3}, {2});
    Tensor target_in = from_vector<int64_t>({2, 2, 4, 4, 5, 6}, {3, 2}),
           target_out = from_vector<int64_t>({4, 4, 5, 6, 3, 3}, {3, 2});
    Tensor mask = from_vector<float>({1, 1, 1, 1, 1, 0}, {3, 2});
    auto run = [&](seq2seq::Seq2Seq& model, Device d) {
      Tensor logits =
          model.decode_teacher(model.encode(to(source, d), to(lengths, d)), to(target_in, d));
      Tensor loss = model.loss(logits, to(target_out, d), to(mask, d));
      backward(loss);
      return std::pair{logits, loss};
    };
    auto [cpu_logits, cpu_loss] = run(cpu_model, Device::cpu());
    auto [gpu_logits, gpu_loss] = run(gpu_model, Device::cuda());
    EXPECT_TRUE(testing::all_close(gpu_logits, cpu_logits, 1e-5, 1e-4));
    EXPECT_NEAR(gpu_loss.item(), cpu_loss.item(), 1e-5);
    // The training loss on the real tokens alone (a gather on the device, from host copies).
    const seq2seq::HostCopies host{source, lengths, target_in, target_out, mask};
    auto real_loss = [&](seq2seq::Seq2Seq& model, Device d) {
      NoGradGuard no_grad;
      return model
          .teacher_forced_loss(model.encode(to(source, d), to(lengths, d), host), to(target_in, d),
                               to(target_out, d), to(mask, d), 1.0, 0.0, host)
          .item();
    };
    EXPECT_NEAR(real_loss(gpu_model, Device::cuda()), real_loss(cpu_model, Device::cpu()), 1e-5);
    EXPECT_NEAR(real_loss(cpu_model, Device::cpu()), cpu_loss.item(), 1e-6);
    // Search with the model on the GPU (token ids come from the host) picks the CPU's tokens.
    cpu_model.eval();
    gpu_model.eval();
    seq2seq::SearchOptions options{2, 3, {5, 5}};
    seq2seq::Seq2SeqStepper cpu_stepper(cpu_model, source, lengths, 2),
        gpu_stepper(gpu_model, to(source, Device::cuda()), to(lengths, Device::cuda()), 2);
    auto cpu_beams = seq2seq::beam_search(cpu_stepper, 2, options, {2, 1.0, 1});
    auto gpu_beams = seq2seq::beam_search(gpu_stepper, 2, options, {2, 1.0, 1});
    for (int b = 0; b < 2; ++b) EXPECT_EQ(gpu_beams[b][0].tokens, cpu_beams[b][0].tokens);
    nn::StateDict cpu_params = cpu_model.state_dict(), gpu_params = gpu_model.state_dict();
    for (auto& [name, p] : cpu_params) {
      EXPECT_TRUE(testing::all_close(gpu_params[name].grad(), p.grad(), 1e-5, 1e-3)) << name;
    }
  }
}

}  // namespace
}  // namespace kiln
