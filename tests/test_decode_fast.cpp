// Decoding with fewer FLOPs gives the same outputs (issue 12, item 7): small models trained to
// reverse sentences of mixed lengths, decoded in one batch by the translator's path (prepared
// steppers, rows dropped as they finish, top-k on the device) and, as the reference, sentence by
// sentence through the plain path: decode_step on an unprepared encoding. topk, which ranks the
// beams' candidates on the device, is held to a sort on the host.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/gemm.h"
#include "models/seq2seq/search.h"
#include "test_util.h"

namespace kiln {
namespace {

using seq2seq::Attention;
using seq2seq::Hypothesis;
using seq2seq::Seq2Seq;

// The plain path: every step feeds [embedding; context] (no prepare_decoding).
class PlainStepper : public seq2seq::Stepper {
 public:
  PlainStepper(const Seq2Seq& model, const Tensor& source, const Tensor& lengths, int64_t repeat)
      : model_(model) {
    NoGradGuard no_grad;
    enc_ = model.encode(source, lengths);
    std::vector<int64_t> index(repeat, 0);
    enc_ = Seq2Seq::select_rows(enc_, from_vector(index, {repeat}));
    state_ = model.initial_state(enc_);
  }
  Tensor step(const Tensor& tokens) override {
    NoGradGuard no_grad;
    return log_softmax(model_.decode_step(enc_, tokens, state_));
  }
  void reorder(const Tensor& index) override {
    NoGradGuard no_grad;
    state_ = Seq2Seq::select_rows(state_, index);
  }

 private:
  const Seq2Seq& model_;
  seq2seq::EncoderOutput enc_;
  seq2seq::DecoderState state_;
};

// "none gru", "bahdanau lstm", ...: which model a failure is about.
std::string model_kind(Attention attention, nn::CellType cell) {
  return std::string(seq2seq::attention_name(attention)) +
         (cell == nn::CellType::gru ? " gru" : " lstm");
}

// Sources of 2..5 random tokens from 4..9, targets reversed then <eos>; `steps` Adam steps.
std::unique_ptr<Seq2Seq> trained_reverser(Attention attention, nn::CellType cell, int steps) {
  manual_seed(21);
  seq2seq::ModelConfig c;
  c.source_vocab = c.target_vocab = 10;
  c.embed_size = 8;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.dropout = 0.0;
  c.cell = cell;
  c.attention = attention;
  auto model = std::make_unique<Seq2Seq>(c);
  nn::Adam opt(model->parameters(), nn::AdamOptions{0.02});
  const int64_t B = 32, S = 5;
  for (int step = 0; step < steps; ++step) {
    std::vector<double> u = uniform({S * B + B}, 0, 1, DType::f64).to_vector<double>();
    std::vector<int64_t> src(S * B, 0), tin((S + 1) * B, 0), tout((S + 1) * B, 0), len(B);
    std::vector<float> mask((S + 1) * B, 0.0f);
    for (int64_t b = 0; b < B; ++b) {
      len[b] = 2 + static_cast<int64_t>(u[S * B + b] * (S - 1));
      for (int64_t t = 0; t < len[b]; ++t)
        src[t * B + b] = 4 + static_cast<int64_t>(u[t * B + b] * 6);
      tin[b] = 2;
      for (int64_t t = 0; t <= len[b]; ++t) {
        tout[t * B + b] = t == len[b] ? 3 : src[(len[b] - 1 - t) * B + b];
        if (t + 1 <= S) tin[(t + 1) * B + b] = tout[t * B + b];
        mask[t * B + b] = 1.0f;
      }
    }
    opt.zero_grad();
    seq2seq::EncoderOutput enc = model->encode(from_vector(src, {S, B}), from_vector(len, {B}));
    Tensor loss = model->loss(model->decode_teacher(enc, from_vector(tin, {S + 1, B})),
                              from_vector(tout, {S + 1, B}), from_vector(mask, {S + 1, B}));
    backward(loss);
    nn::clip_grad_norm(model->parameters(), 1.0);
    opt.step();
  }
  model->eval();
  return model;
}

struct Sentences {
  std::vector<std::vector<int64_t>> ids;
  // [S, B] padded with 0, and [B] lengths.
  Tensor source() const {
    int64_t S = 0, B = static_cast<int64_t>(ids.size());
    for (const auto& s : ids) S = std::max<int64_t>(S, static_cast<int64_t>(s.size()));
    std::vector<int64_t> v(S * B, 0);
    for (int64_t b = 0; b < B; ++b) {
      for (size_t t = 0; t < ids[b].size(); ++t) v[t * B + b] = ids[b][t];
    }
    return from_vector(v, {S, B});
  }
  Tensor lengths() const {
    std::vector<int64_t> v;
    for (const auto& s : ids) v.push_back(static_cast<int64_t>(s.size()));
    return from_vector(v, {static_cast<int64_t>(v.size())});
  }
};

// Mixed lengths, so rows finish at different steps: the shortest last (the first rows to drop are
// the batch's last ones, so the rows left keep their places), then one in the middle.
Sentences test_sentences() {
  return {{{4, 5, 6, 7, 8}, {5, 5, 6}, {7, 8, 9, 4}, {8, 4, 9, 5, 6}, {4, 9, 9}, {6, 7}, {9, 4}}};
}

void expect_same(const Hypothesis& fast, const Hypothesis& plain, const std::string& what) {
  EXPECT_EQ(fast.tokens, plain.tokens) << what;
  EXPECT_NEAR(fast.log_prob, plain.log_prob, 1e-4) << what;
  EXPECT_EQ(fast.finished, plain.finished) << what;
}

TEST(DecodeFast, BatchedPreparedSearchMatchesThePlainPathSentenceBySentence) {
  for (Attention attention : {Attention::none, Attention::bahdanau}) {
    for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
      const std::string name = model_kind(attention, cell);
      std::unique_ptr<Seq2Seq> model = trained_reverser(attention, cell, 150);
      Sentences s = test_sentences();
      const int64_t B = static_cast<int64_t>(s.ids.size());
      std::vector<int64_t> max_lengths;
      for (const auto& ids : s.ids) max_lengths.push_back(static_cast<int64_t>(ids.size()) + 3);
      seq2seq::SearchOptions options{2, 3, max_lengths};
      const int64_t K = 3;
      seq2seq::Seq2SeqStepper greedy_stepper(*model, s.source(), s.lengths());
      std::vector<Hypothesis> greedy = seq2seq::greedy_search(greedy_stepper, B, options);
      seq2seq::Seq2SeqStepper beam_stepper(*model, s.source(), s.lengths(), K);
      auto beams = seq2seq::beam_search(beam_stepper, B, options, {K, 1.0, 2});
      int64_t reversed = 0;
      for (int64_t b = 0; b < B; ++b) {
        Sentences one{{s.ids[b]}};
        seq2seq::SearchOptions one_options{2, 3, {max_lengths[b]}};
        PlainStepper plain_greedy(*model, one.source(), one.lengths(), 1);
        Hypothesis g = seq2seq::greedy_search(plain_greedy, 1, one_options)[0];
        expect_same(greedy[b], g, name + " greedy, sentence " + std::to_string(b));
        PlainStepper plain_beam(*model, one.source(), one.lengths(), K);
        auto list = seq2seq::beam_search(plain_beam, 1, one_options, {K, 1.0, 2})[0];
        ASSERT_EQ(beams[b].size(), list.size()) << name;
        for (size_t n = 0; n < list.size(); ++n) {
          expect_same(beams[b][n], list[n],
                      name + " beam, sentence " + std::to_string(b) + " n " + std::to_string(n));
        }
        std::vector<int64_t> expected(s.ids[b].rbegin(), s.ids[b].rend());
        expected.push_back(3);
        reversed += g.tokens == expected;
      }
      // The comparison means something only if the model decodes real sentences of several
      // lengths: most are reversed correctly.
      EXPECT_GE(reversed, B / 2) << name;
    }
  }
}

// Forwards to a Seq2SeqStepper and records each step's rows; `allow_one_row_first` false keeps
// the stepper's K rows per sentence from the first step on (what beam search did before).
class RecordingStepper : public seq2seq::Stepper {
 public:
  RecordingStepper(seq2seq::Stepper& inner, bool allow_one_row_first)
      : inner_(inner), allow_(allow_one_row_first) {}
  Tensor step(const Tensor& tokens) override {
    rows.push_back(tokens.size(0));
    return inner_.step(tokens);
  }
  seq2seq::StepTop step_top(const Tensor& tokens, int64_t n) override {
    rows.push_back(tokens.size(0));
    return inner_.step_top(tokens, n);
  }
  void reorder(const Tensor& index) override { inner_.reorder(index); }
  bool first_step_one_row_per_sentence() override {
    return allow_ && inner_.first_step_one_row_per_sentence();
  }
  Tensor last_attention() const override { return inner_.last_attention(); }
  std::vector<int64_t> rows;

 private:
  seq2seq::Stepper& inner_;
  bool allow_;
};

// Beam search's first step, where a sentence's K beams are one (only beam 0 alive), runs on one
// row per sentence, and the first reorder makes the beams: the same hypotheses as K rows per
// sentence from the start, with the same log-probabilities and attention rows up to rounding (the
// small products' results move in the last bit with their row count).
TEST(DecodeFast, BeamSearchTakesItsFirstStepOnOneRowPerSentence) {
  for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
    std::unique_ptr<Seq2Seq> model = trained_reverser(Attention::bahdanau, cell, 150);
    Sentences s = test_sentences();
    const int64_t B = static_cast<int64_t>(s.ids.size()), K = 3;
    seq2seq::SearchOptions options{2, 3, std::vector<int64_t>(B, 8)};
    options.keep_attention = true;
    seq2seq::Seq2SeqStepper one_row_inner(*model, s.source(), s.lengths(), K, true),
        k_rows_inner(*model, s.source(), s.lengths(), K, true);
    RecordingStepper one_row(one_row_inner, true), k_rows(k_rows_inner, false);
    auto got = seq2seq::beam_search(one_row, B, options, {K, 1.0, 2});
    auto expected = seq2seq::beam_search(k_rows, B, options, {K, 1.0, 2});
    ASSERT_GE(one_row.rows.size(), 2u);
    EXPECT_EQ(one_row.rows[0], B);
    EXPECT_EQ(one_row.rows[1], B * K);
    EXPECT_EQ(k_rows.rows[0], B * K);
    for (int64_t b = 0; b < B; ++b) {
      ASSERT_EQ(got[b].size(), expected[b].size()) << b;
      for (size_t n = 0; n < got[b].size(); ++n) {
        const std::string what = "sentence " + std::to_string(b) + " n " + std::to_string(n);
        expect_same(got[b][n], expected[b][n], what);
        ASSERT_EQ(got[b][n].attention.size(), expected[b][n].attention.size()) << what;
        for (size_t t = 0; t < got[b][n].attention.size(); ++t) {
          const std::vector<float>& a = got[b][n].attention[t];
          const std::vector<float>& e = expected[b][n].attention[t];
          ASSERT_EQ(a.size(), e.size()) << what;
          for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], e[j], 1e-6) << what;
        }
      }
    }
  }
}

// An untrained 2-layer model of hidden size 256 over 600 ids, in eval mode: large enough that
// oneDNN takes a 64-row step's products (64 x 768 x 256), so prepared decoding transposes.
std::unique_ptr<Seq2Seq> wide_model(Attention attention, nn::CellType cell,
                                    bool bidirectional = false) {
  seq2seq::ModelConfig c;
  c.bidirectional = bidirectional;
  c.source_vocab = c.target_vocab = 600;
  c.embed_size = 32;
  c.hidden_size = 256;
  c.num_layers = 2;
  c.cell = cell;
  c.attention = attention;
  auto model = std::make_unique<Seq2Seq>(c);
  model->eval();
  return model;
}

// B random sources [S, B] of ids 4..593 and their lengths [B], 2..S.
std::pair<Tensor, Tensor> random_sources(int64_t B, int64_t S) {
  std::vector<double> u = uniform({S * B}, 0, 1, DType::f64).to_vector<double>();
  std::vector<int64_t> src(S * B), len(B);
  for (int64_t i = 0; i < S * B; ++i) src[i] = 4 + static_cast<int64_t>(u[i] * 590);
  for (int64_t b = 0; b < B; ++b) len[b] = 2 + b % (S - 1);
  return {from_vector(src, {S, B}), from_vector(len, {B})};
}

// Prepared decoding on the CPU transposes the decoder's weights once when each step's products go
// to oneDNN (64 rows x 768 x 256 here; kernels/gemm.h), and not for one row; the steps then read
// the transposes (RnnWeights::w_ih_t, w_hh_t; OutputRows::weight_t). Their log-probabilities are
// the plain path's, up to the products' summation order.
TEST(DecodeFast, TransposedWeightsGiveThePlainPathsLogProbabilities) {
  for (Attention attention : {Attention::none, Attention::bahdanau}) {
    for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
      const std::string name = model_kind(attention, cell);
      manual_seed(8);
      std::unique_ptr<Seq2Seq> owned = wide_model(attention, cell);
      const Seq2Seq& model = *owned;
      NoGradGuard no_grad;
      const int64_t B = 64, S = 6;
      const auto [source, lengths] = random_sources(B, S);

      seq2seq::EncoderOutput prepared = model.encode(source, lengths);
      model.prepare_decoding(prepared, B);
      const bool transposed = kernels::built_with_onednn();
      ASSERT_EQ(prepared.decoder_weights.size(), 2u) << name;
      for (const RnnWeights& w : prepared.decoder_weights) {
        EXPECT_EQ(w.w_ih_t.defined(), transposed) << name;
        EXPECT_EQ(w.w_hh_t.defined(), transposed) << name;
      }
      EXPECT_EQ(model.output_rows(Tensor(), B).weight_t.defined(), transposed) << name;
      seq2seq::EncoderOutput one_row = model.encode(source, lengths);
      model.prepare_decoding(one_row, 1);
      EXPECT_FALSE(one_row.decoder_weights[1].w_hh_t.defined()) << name;
      EXPECT_FALSE(model.output_rows(Tensor(), 1).weight_t.defined()) << name;

      seq2seq::Seq2SeqStepper stepper(model, source, lengths);
      seq2seq::EncoderOutput plain = model.encode(source, lengths);
      seq2seq::DecoderState state = model.initial_state(plain);
      Tensor tokens = full({B}, 2.0, Options{DType::i64});
      for (int step = 0; step < 3; ++step) {
        Tensor expected = log_softmax(model.decode_step(plain, tokens, state));
        Tensor got = stepper.step(tokens);
        EXPECT_TRUE(testing::all_close(got, expected, 1e-4, 1e-4)) << name << " step " << step;
        tokens = argmax(expected, -1);
      }
    }
  }
}

// Prepared weights kept across batches (seq2seq::DecodingWeightsCache, as the Translator keeps
// them): every batch decoded on the kept copies gives the tokens and log-probabilities of weights
// prepared for that batch alone; the encoder reading its kept W_hh^T encodes as the plain encoder
// does; one entry serves every batch whose rows make the same copies pay. At 64 rows the kept
// copies include the embedding tables (DecodingWeights::embedding_gates, encoder_embedding_gates),
// which a batch's own weights never do: the encoder's rows are its first layer's own input product,
// bit for bit (the encoder outputs are equal); without attention the decoder's rows are the step's
// own product, bit for bit; with attention the step's layer-0 product sums the context's share
// apart from the embedding's, which moves the last bits of a log-probability (the tokens stay the
// same).
TEST(DecodeFast, KeptDecodingWeightsDecodeAsWeightsPreparedPerBatch) {
  for (Attention attention : {Attention::none, Attention::bahdanau}) {
    for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
      const std::string name = model_kind(attention, cell);
      manual_seed(9);
      std::unique_ptr<Seq2Seq> owned = wide_model(attention, cell);
      const Seq2Seq& model = *owned;
      NoGradGuard no_grad;
      const int64_t B = 64, S = 6, K = 3;
      const auto [source, lengths] = random_sources(B, S);

      seq2seq::DecodingWeightsCache kept;
      const std::shared_ptr<const seq2seq::DecodingWeights> weights = kept.get(model, B);
      EXPECT_EQ(kept.get(model, B), weights) << name;
      EXPECT_EQ(kept.get(model, 1) == weights,
                model.decoding_copies(1, true) == model.decoding_copies(B, true))
          << name;
      ASSERT_TRUE(weights->embedding_gates.defined()) << name;
      const int64_t gates = weights->layers[0].w_hh.size(0);  // G: 3 H (GRU) or 4 H (LSTM)
      EXPECT_EQ(weights->embedding_gates.shape(), (Shape{model.config().target_vocab, gates}))
          << name;
      EXPECT_FALSE(kept.get(model, 1)->embedding_gates.defined()) << name;
      ASSERT_EQ(weights->encoder_layers.size(), 2u) << name;
      // The encoder's table: its first layer's input gates, looked up per source token.
      ASSERT_EQ(weights->encoder_embedding_gates.size(), 1u) << name;
      EXPECT_EQ(weights->encoder_embedding_gates[0].shape(),
                (Shape{model.config().source_vocab, weights->encoder_layers[0].w_hh.size(0)}))
          << name;
      EXPECT_TRUE(kept.get(model, 1)->encoder_embedding_gates.empty()) << name;
      seq2seq::EncoderOutput plain = model.encode(source, lengths);
      seq2seq::EncoderOutput read_kept = model.encode(source, lengths, {}, weights.get());
      EXPECT_EQ(plain.keys.defined(), attention != Attention::none) << name;
      if (plain.keys.defined()) {
        EXPECT_TRUE(testing::all_close(read_kept.keys, plain.keys, 0, 0)) << name;
      }
      EXPECT_TRUE(testing::all_close(read_kept.init_h, plain.init_h, 0, 0)) << name;

      std::vector<int64_t> max_lengths(B, 8);
      const seq2seq::SearchOptions options{2, 3, max_lengths};
      for (int batch = 0; batch < 2; ++batch) {  // the second batch reads the first one's copies
        seq2seq::Seq2SeqStepper fresh(model, source, lengths),
            reused(model, source, lengths, 1, false, Tensor(), &kept);
        std::vector<Hypothesis> expected = seq2seq::greedy_search(fresh, B, options);
        std::vector<Hypothesis> got = seq2seq::greedy_search(reused, B, options);
        seq2seq::Seq2SeqStepper fresh_beams(model, source, lengths, K),
            reused_beams(model, source, lengths, K, false, Tensor(), &kept);
        auto expected_beams = seq2seq::beam_search(fresh_beams, B, options, {K, 1.0, 1});
        auto got_beams = seq2seq::beam_search(reused_beams, B, options, {K, 1.0, 1});
        // Bit for bit without attention; with it, within 1e-5 relative.
        const double rel = attention == Attention::none ? 0.0 : 1e-5;
        for (int64_t b = 0; b < B; ++b) {
          EXPECT_EQ(got[b].tokens, expected[b].tokens) << name << " greedy " << b;
          EXPECT_NEAR(got[b].log_prob, expected[b].log_prob, rel * std::abs(expected[b].log_prob))
              << name << " greedy " << b;
          EXPECT_EQ(got_beams[b][0].tokens, expected_beams[b][0].tokens) << name << " beam " << b;
          EXPECT_NEAR(got_beams[b][0].log_prob, expected_beams[b][0].log_prob,
                      rel * std::abs(expected_beams[b][0].log_prob))
              << name << " beam " << b;
        }
      }
    }
  }
}

// A bidirectional encoder has a table per direction; encoding on them gives the plain encoder's
// keys and states bit for bit.
TEST(DecodeFast, BidirectionalEncoderLooksUpEachDirectionsGates) {
  for (nn::CellType cell : {nn::CellType::gru, nn::CellType::lstm}) {
    manual_seed(21);
    std::unique_ptr<Seq2Seq> owned = wide_model(Attention::bahdanau, cell, true);
    const Seq2Seq& model = *owned;
    NoGradGuard no_grad;
    const auto [source, lengths] = random_sources(64, 7);
    seq2seq::DecodingWeightsCache kept;
    const std::shared_ptr<const seq2seq::DecodingWeights> weights = kept.get(model, 64);
    ASSERT_EQ(weights->encoder_embedding_gates.size(), 2u);
    const seq2seq::EncoderOutput plain = model.encode(source, lengths);
    const seq2seq::EncoderOutput looked_up = model.encode(source, lengths, {}, weights.get());
    EXPECT_TRUE(testing::all_close(looked_up.keys, plain.keys, 0, 0));
    EXPECT_TRUE(testing::all_close(looked_up.init_h, plain.init_h, 0, 0));
    if (cell == nn::CellType::lstm) {
      EXPECT_TRUE(testing::all_close(looked_up.init_c, plain.init_c, 0, 0));
    }
  }
}

// The vocabulary shortlist (issue 12, item 7): a shortlist of every id decodes exactly as the
// full vocabulary; a partial one gives the full model's log-probabilities restricted to it and
// renormalized (log_softmax over its columns), and only its ids.
TEST(DecodeFast, ShortlistOfEveryIdMatchesTheFullVocabulary) {
  for (Attention attention : {Attention::none, Attention::bahdanau}) {
    const std::string name = seq2seq::attention_name(attention);
    std::unique_ptr<Seq2Seq> model = trained_reverser(attention, nn::CellType::gru, 150);
    Sentences s = test_sentences();
    const int64_t B = static_cast<int64_t>(s.ids.size()), K = 3;
    std::vector<int64_t> max_lengths, every_id;
    for (const auto& ids : s.ids) max_lengths.push_back(static_cast<int64_t>(ids.size()) + 3);
    for (int64_t v = 0; v < 10; ++v) every_id.push_back(v);
    seq2seq::SearchOptions full{2, 3, max_lengths}, listed{2, 3, max_lengths};
    listed.shortlist = every_id;
    const Tensor ids = from_vector(every_id, {10});
    seq2seq::Seq2SeqStepper a(*model, s.source(), s.lengths()),
        b(*model, s.source(), s.lengths(), 1, false, ids);
    std::vector<Hypothesis> greedy = seq2seq::greedy_search(a, B, full);
    std::vector<Hypothesis> greedy_listed = seq2seq::greedy_search(b, B, listed);
    seq2seq::Seq2SeqStepper c(*model, s.source(), s.lengths(), K),
        d(*model, s.source(), s.lengths(), K, false, ids);
    auto beams = seq2seq::beam_search(c, B, full, {K, 1.0, 2});
    auto beams_listed = seq2seq::beam_search(d, B, listed, {K, 1.0, 2});
    for (int64_t i = 0; i < B; ++i) {
      EXPECT_EQ(greedy_listed[i].tokens, greedy[i].tokens) << name << " greedy " << i;
      EXPECT_EQ(greedy_listed[i].log_prob, greedy[i].log_prob) << name << " greedy " << i;
      ASSERT_EQ(beams_listed[i].size(), beams[i].size()) << name;
      for (size_t n = 0; n < beams[i].size(); ++n) {
        EXPECT_EQ(beams_listed[i][n].tokens, beams[i][n].tokens) << name << " beam " << i;
        EXPECT_EQ(beams_listed[i][n].log_prob, beams[i][n].log_prob) << name << " beam " << i;
      }
    }
  }
}

TEST(DecodeFast, ShortlistIsTheFullSoftmaxRestrictedToIt) {
  std::unique_ptr<Seq2Seq> model = trained_reverser(Attention::bahdanau, nn::CellType::gru, 150);
  Sentences s = test_sentences();
  const int64_t B = static_cast<int64_t>(s.ids.size());
  // Without 4 and 8, which the reversed sentences need: the search must pick other ids.
  const std::vector<int64_t> listed = {0, 1, 2, 3, 5, 6, 7, 9};
  const Tensor ids = from_vector(listed, {8});
  seq2seq::Seq2SeqStepper full(*model, s.source(), s.lengths()),
      short_(*model, s.source(), s.lengths(), 1, false, ids);
  Tensor tokens = from_vector(std::vector<int64_t>(B, 2), {B});
  for (int step = 0; step < 3; ++step) {
    // index_select picks rows: the full step's columns, as rows of its transpose.
    Tensor expected =
        log_softmax(transpose(index_select(transpose(full.step(tokens), 0, 1), 0, ids), 0, 1));
    Tensor got = short_.step(tokens);
    ASSERT_EQ(got.shape(), (Shape{B, 8}));
    EXPECT_TRUE(testing::all_close(got, expected, 1e-5, 1e-5)) << "step " << step;
    tokens = from_vector(std::vector<int64_t>(B, 6), {B});
  }
  std::vector<int64_t> max_lengths(B, 6);
  seq2seq::SearchOptions options{2, 3, max_lengths};
  options.shortlist = listed;
  seq2seq::Seq2SeqStepper g(*model, s.source(), s.lengths(), 1, false, ids),
      k(*model, s.source(), s.lengths(), 3, false, ids);
  std::vector<Hypothesis> greedy = seq2seq::greedy_search(g, B, options);
  auto beams = seq2seq::beam_search(k, B, options, {3, 1.0, 3});
  for (int64_t b = 0; b < B; ++b) {
    std::vector<std::vector<int64_t>> outputs = {greedy[b].tokens};
    for (const Hypothesis& h : beams[b]) outputs.push_back(h.tokens);
    for (const auto& tokens : outputs) {
      ASSERT_FALSE(tokens.empty());
      for (int64_t id : tokens) {
        EXPECT_TRUE(std::find(listed.begin(), listed.end(), id) != listed.end())
            << "sentence " << b << " id " << id;
      }
    }
  }
}

// The searches' fused ranking equals topk(log_softmax(x)) bit for bit: the same values in the same
// order, ties (many here) to the lower column, k capped at the row; f32 and f64.
TEST(DecodeFast, LogSoftmaxTopKIsTopKOfLogSoftmaxBitForBit) {
  manual_seed(8);
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<double> v = uniform({5 * 300}, -6, 6, DType::f64).to_vector<double>();
    for (size_t i = 0; i < v.size(); i += 3) v[i] = std::floor(v[i]);  // ties
    Tensor x = to(from_vector(v, {5, 300}), dtype);
    for (int64_t k : {1, 2, 10, 300, 400}) {
      auto [values, ids] = log_softmax_topk(x, k);
      auto [expected_values, expected_ids] = topk(log_softmax(x), k);
      EXPECT_EQ(ids.to_vector<int64_t>(), expected_ids.to_vector<int64_t>()) << "k " << k;
      EXPECT_EQ(to(values, DType::f64).to_vector<double>(),
                to(expected_values, DType::f64).to_vector<double>())
          << "k " << k;
    }
  }
  Tensor needs_grad = ones({2, 3});
  needs_grad.set_requires_grad(true);
  EXPECT_THROW(log_softmax_topk(needs_grad, 2), Error);
  EXPECT_THROW(log_softmax_topk(ones({2, 3}), 0), Error);
}

// With a bias (a decoding step's output layer, its add left to the ranking's read): the same bits
// as ranking the added logits, on `device`.
void expect_biased_ranking_is_the_sums(Device device) {
  manual_seed(9);
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor x = to(to(uniform({7, 333}, -8, 8, DType::f64), dtype), device);
    Tensor bias = to(to(uniform({333}, -3, 3, DType::f64), dtype), device);
    for (int64_t k : {1, 5, 333}) {
      auto [values, ids] = log_softmax_topk(x, k, bias);
      auto [expected_values, expected_ids] = log_softmax_topk(x + bias, k);
      EXPECT_EQ(to(ids, Device::cpu()).to_vector<int64_t>(),
                to(expected_ids, Device::cpu()).to_vector<int64_t>())
          << device.str() << " k " << k;
      EXPECT_EQ(to(to(values, DType::f64), Device::cpu()).to_vector<double>(),
                to(to(expected_values, DType::f64), Device::cpu()).to_vector<double>())
          << device.str() << " k " << k;
    }
  }
}

// Wide rows (a vocabulary's logits): the host ranks a few of many columns from its blocks of
// largest maxima (kernels/softmax.cpp), with the values, order and ties of topk(log_softmax),
// also with a bias, and when values round to the same log-probability; rows whose max is 0 or
// that hold inf or NaN take offer_row's pass.
TEST(DecodeFast, LogSoftmaxTopKOfWideRowsIsTopKOfLogSoftmaxBitForBit) {
  manual_seed(10);
  const int64_t C = 3001;
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<double> v = uniform({9 * C}, -6, 6, DType::f64).to_vector<double>();
    for (int64_t c = 0; c < C; ++c) {
      double* row = v.data();
      row[c] = std::floor(row[c]);                      // row 0: ties in every block
      row[1 * C + c] = 2.5;                             // row 1: all equal
      if (c % 500 == 7) row[2 * C + c] = 9;             // row 2: its best spread over blocks
      if (c % 3 == 0) row[3 * C + c] = -inf;            // row 3: -inf among them
      row[4 * C + c] = -std::abs(row[4 * C + c]);       // row 4: max 0 (at column 1234)
      if (c == 99) row[5 * C + c] = inf;                // row 5: +inf
      if (c == 2000) row[6 * C + c] = std::nan("");     // row 6: NaN
      row[7 * C + c] = std::floor(row[7 * C + c] * 2);  // row 7: ties, k-th tied across blocks
      // Row 8: 1 - 2^-24 (the float below 1) but for a 1 in the last block. In f32 the two round to
      // the same log-probability (2^-24 is below half an ulp of the log-sum, about 8), so the tie
      // goes to column 0, in a block whose max is below the chosen block's.
      row[8 * C + c] = c == C - 2 ? 1.0 : 1.0 - std::ldexp(1.0, -24);
    }
    v[4 * C + 1234] = 0;
    Tensor x = to(from_vector(v, {9, C}), dtype);
    Tensor bias = to(uniform({C}, -1, 1, DType::f64), dtype);
    for (int64_t k : {1, 3, 10, 11}) {
      for (bool biased : {false, true}) {
        auto [values, ids] = biased ? log_softmax_topk(x, k, bias) : log_softmax_topk(x, k);
        auto [expected_values, expected_ids] = topk(log_softmax(biased ? x + bias : x), k);
        const std::string where =
            std::string(dtype_name(dtype)) + " k " + std::to_string(k) + (biased ? " biased" : "");
        EXPECT_EQ(ids.to_vector<int64_t>(), expected_ids.to_vector<int64_t>()) << where;
        const std::vector<double> got = to(values, DType::f64).to_vector<double>(),
                                  want = to(expected_values, DType::f64).to_vector<double>();
        ASSERT_EQ(got.size(), want.size());
        for (size_t n = 0; n < got.size(); ++n) {  // NaN rows: NaN where topk has NaN
          EXPECT_TRUE(got[n] == want[n] || (std::isnan(got[n]) && std::isnan(want[n])))
              << where << ", entry " << n << ": " << got[n] << " against " << want[n];
        }
      }
    }
  }
}

// A bias of the wrong size, dtype or device, or one that needs a gradient, is an error naming it.
TEST(DecodeFast, LogSoftmaxTopKWithABiasIsTheRankingOfTheSum) {
  expect_biased_ranking_is_the_sums(Device::cpu());
  const Tensor x = ones({2, 3});
  EXPECT_CONTAINS(testing::error_of([&] { log_softmax_topk(x, 2, ones({4})); }),
                  "log_softmax_topk: bias must be [3] of the input's dtype and device, got");
  EXPECT_CONTAINS(testing::error_of([&] { log_softmax_topk(x, 2, ones({3}, DType::f64)); }),
                  "bias must be [3]");
  Tensor needs_grad = ones({3});
  needs_grad.set_requires_grad(true);
  EXPECT_CONTAINS(testing::error_of([&] { log_softmax_topk(x, 2, needs_grad); }),
                  "not differentiable");
}

TEST(DecodeFast, LogSoftmaxTopKWithABiasOnCuda) {
  KILN_REQUIRE_GPU();
  expect_biased_ranking_is_the_sums(Device::cuda(0));
}

// topk against a full stable sort on the host: largest first, ties to the lower index, k capped
// at the row's size; f32 and f64.
TEST(DecodeFast, TopKMatchesASortOnTheHost) {
  manual_seed(5);
  for (DType dtype : {DType::f32, DType::f64}) {
    const int64_t rows = 6, cols = 50;
    // Values rounded to a few levels, so rows hold many ties.
    std::vector<double> v = uniform({rows * cols}, 0, 8, DType::f64).to_vector<double>();
    for (double& x : v) x = std::floor(x) - 4;
    Tensor x = to(from_vector(v, {rows, cols}), dtype);
    for (int64_t k : {1, 3, 10, 50, 80}) {
      auto [values, ids] = topk(x, k);
      const int64_t n = std::min(k, cols);
      ASSERT_EQ(values.shape(), (Shape{rows, n}));
      std::vector<double> got_values = to(values, DType::f64).to_vector<double>();
      std::vector<int64_t> got_ids = ids.to_vector<int64_t>();
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<int64_t> order(cols);
        for (int64_t c = 0; c < cols; ++c) order[c] = c;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return v[r * cols + a] > v[r * cols + b]; });
        for (int64_t j = 0; j < n; ++j) {
          EXPECT_EQ(got_ids[r * n + j], order[j]) << "row " << r << " k " << k << " rank " << j;
          EXPECT_EQ(got_values[r * n + j], v[r * cols + order[j]]);
        }
      }
    }
  }
  Tensor needs_grad = ones({2, 3});
  needs_grad.set_requires_grad(true);
  EXPECT_THROW(topk(needs_grad, 2), Error);
  EXPECT_THROW(topk(ones({2, 3}), 0), Error);
}

}  // namespace
}  // namespace kiln
