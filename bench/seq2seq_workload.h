// The Seq2Seq workloads of the side-by-side benchmark (issue 5), shared by bench_train_step (the
// Google Benchmark suite) and seq2seq_side (the kiln half of bench/side_by_side.py).
//
//   step   = encode + teacher-forced decode + masked CE + backward + clip_grad_norm(1.0) +
//   Adam(1e-3) small  = embed 32, hidden 32, 2 layers, batch 64, source/target length 10, vocab
//   200, no padding large  = embed 256, hidden 512, 2 layers, batch 64, length 30, vocab 8000, ~20%
//   padding
//            (each sentence's length uniform in [0.6 L, L])
// The model is d2l's (decoder input = embedding + fixed context, decoder init = encoder final
// state), or with Bahdanau attention. Dropout is off so that both sides compute the same numbers.
#pragma once

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "kiln.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/search.h"

namespace kiln::bench {

struct Workload {
  std::string name;  // small-gru, small-lstm, large-gru, large-lstm, large-gru-attn
  seq2seq::ModelConfig config;
  int64_t batch = 64, length = 0;
  bool padded = false;
};

inline Workload make_workload(bool large, bool lstm, bool attention) {
  Workload w;
  w.name = std::string(large ? "large" : "small") + (lstm ? "-lstm" : "-gru") +
           (attention ? "-attn" : "");
  seq2seq::ModelConfig& c = w.config;
  c.cell = lstm ? nn::CellType::lstm : nn::CellType::gru;
  c.attention = attention ? seq2seq::Attention::bahdanau : seq2seq::Attention::none;
  c.num_layers = 2;
  c.dropout = 0.0;
  c.embed_size = large ? 256 : 32;
  c.hidden_size = large ? 512 : 32;
  c.source_vocab = c.target_vocab = large ? 8000 : 200;
  w.length = large ? 30 : 10;
  w.padded = large;
  return w;
}

inline std::vector<std::string> workload_names() {
  return {"small-gru",  "small-lstm",     "large-gru",
          "large-lstm", "large-gru-attn", "large-lstm-attn"};
}

// Throws a kiln::Error listing the names when `name` is not one of them.
inline Workload workload_named(const std::string& name) {
  for (bool large : {false, true}) {
    for (bool lstm : {false, true}) {
      for (bool attention : {false, true}) {
        Workload w = make_workload(large, lstm, attention);
        if (w.name == name) return w;
      }
    }
  }
  std::string known;
  for (const std::string& n : workload_names()) known += " " + n;
  throw Error("seq2seq workload: unknown name '" + name + "'; known:" + known);
}

struct Batch {
  Tensor source, lengths, target_in, target_out,
      mask;                  // [L, B] ids, [B], [L, B], [L, B], [L, B] f32
  seq2seq::HostCopies host;  // the same on the host, as the trainer's batches keep them
  int64_t tokens = 0;        // real target tokens
};

// Random ids in [4, vocab) (0-3 are <pad> <unk> <bos> <eos>), from kiln's Philox stream (seed it
// first). Target sentences end in <eos>; padding is <pad> = 0 with mask 0.
inline Batch random_batch(const Workload& w, Device device) {
  const int64_t L = w.length, B = w.batch, V = w.config.target_vocab;
  std::vector<double> u = uniform({3 * L * B + B}, 0, 1, DType::f64).to_vector<double>();
  std::vector<int64_t> src(L * B, 0), tin(L * B, 0), tout(L * B, 0), len(B);
  std::vector<float> mask(L * B, 0.0f);
  Batch b;
  for (int64_t j = 0; j < B; ++j) {
    len[j] = w.padded ? static_cast<int64_t>(0.6 * L + u[3 * L * B + j] * 0.4 * L) : L;
    len[j] = std::min(std::max<int64_t>(len[j], 2), L);
    for (int64_t t = 0; t < len[j]; ++t) {
      src[t * B + j] = 4 + static_cast<int64_t>(u[t * B + j] * (V - 4));
      tout[t * B + j] =
          t + 1 == len[j] ? 3 : 4 + static_cast<int64_t>(u[(L + t) * B + j] * (V - 4));
      tin[t * B + j] = t == 0 ? 2 : tout[(t - 1) * B + j];
      mask[t * B + j] = 1.0f;
    }
    b.tokens += len[j];
  }
  b.host = {from_vector(src, {L, B}), from_vector(len, {B}), from_vector(tin, {L, B}),
            from_vector(tout, {L, B}), from_vector(mask, {L, B})};
  b.source = to(b.host.source, device);
  b.lengths = to(b.host.source_lengths, device);
  b.target_in = to(b.host.target_in, device);
  b.target_out = to(b.host.target_out, device);
  b.mask = to(b.host.target_mask, device);
  return b;
}

// The loss of a teacher-forced pass, as the trainer computes it (recorded on the tape when grad
// mode is on).
inline Tensor teacher_forced_loss(const seq2seq::Seq2Seq& model, const Batch& b) {
  return model.teacher_forced_loss(model.encode(b.source, b.lengths, b.host), b.target_in,
                                   b.target_out, b.mask, 1.0, 0.0, b.host);
}

// One training step; returns the loss before the update.
inline Tensor train_step(const seq2seq::Seq2Seq& model, nn::Adam& adam, const Batch& b) {
  adam.zero_grad(/*set_to_none=*/true);  // as the trainer's eager step
  Tensor loss = teacher_forced_loss(model, b);
  backward(loss);
  adam.step(nn::clip_grad_norm_factor(model.parameters(), 1.0).scale);
  return loss;
}

// Greedy (beam 1) or beam-search decoding of the batch (length penalty 1, max length = the
// workload's length, no grad); returns each sentence's best tokens. shortlist > 0: decoded over
// the first `shortlist` target ids only, as `kiln translate --shortlist` decodes a batch over its
// candidates (the output layer and the softmax cover those rows alone). The random workloads have
// no lexical table, so the candidates are a fixed count: kiln's vocabularies are ordered by
// frequency, so these are the reserved and most frequent ids. With `prepared`, the decoder's
// prepared weights are made once for every batch decoded with it, as `kiln translate` and `kiln
// serve` make them once per model (seq2seq::DecodingWeightsCache).
inline std::vector<std::vector<int64_t>> decode_batch(
    const seq2seq::Seq2Seq& model, const Workload& w, const Batch& b, int64_t beam,
    int64_t shortlist = 0, seq2seq::DecodingWeightsCache* prepared = nullptr) {
  NoGradGuard no_grad;
  seq2seq::SearchOptions options{w.config.bos_id, w.config.eos_id,
                                 std::vector<int64_t>(w.batch, w.length)};
  Tensor candidates;
  if (shortlist > 0) {
    KILN_CHECK(shortlist <= w.config.target_vocab, "decode_batch: shortlist ", shortlist,
               " is larger than the target vocabulary (", w.config.target_vocab, ")");
    options.shortlist.resize(static_cast<size_t>(shortlist));
    std::iota(options.shortlist.begin(), options.shortlist.end(), int64_t{0});
    candidates = to(from_vector(options.shortlist, {shortlist}), b.source.device());
  }
  seq2seq::Seq2SeqStepper stepper(model, b.source, b.lengths, beam, false, candidates, prepared);
  std::vector<std::vector<int64_t>> out;
  if (beam == 1) {
    for (const seq2seq::Hypothesis& h : seq2seq::greedy_search(stepper, w.batch, options))
      out.push_back(h.tokens);
  } else {
    for (const auto& best : seq2seq::beam_search(stepper, w.batch, options, {beam, 1.0, 1})) {
      out.push_back(best.front().tokens);
    }
  }
  return out;
}

}  // namespace kiln::bench
