// Inference without a tape: greedy decoding and batched beam search (docs/beam_search.md).
// Both work on a `Stepper`: anything that turns the last tokens of N rows into next-token
// log-probabilities and can reorder its rows; Seq2SeqStepper adapts a model, and tests use a
// hand-built table.
#pragma once

#include <memory>
#include <vector>

#include "models/seq2seq/model.h"

namespace kiln::seq2seq {

class Stepper {
 public:
  virtual ~Stepper() = default;
  // tokens [N] (on the host) -> log-probabilities [N, V] of the next token; advances every row.
  virtual Tensor step(const Tensor& tokens) = 0;
  // Row i of the new state = row index[i] (host) of the current one (beams follow their parents).
  virtual void reorder(const Tensor& index) = 0;
};

// Decodes with a Seq2Seq model; rows = sentences (greedy) or sentences x beams (beam search).
class Seq2SeqStepper : public Stepper {
 public:
  // Encodes the batch; `repeat` copies each sentence that many times (beams are adjacent rows).
  Seq2SeqStepper(const Seq2Seq& model, const Tensor& source, const Tensor& source_lengths,
                 int64_t repeat = 1, bool keep_attention = false);
  Tensor step(const Tensor& tokens) override;
  void reorder(const Tensor& index) override;
  const Tensor& last_attention() const { return attention_; }  // [N, S] of the last step

 private:
  const Seq2Seq& model_;
  int64_t repeat_;
  EncoderOutput enc_;
  DecoderState state_;
  bool keep_attention_;
  Tensor attention_;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without <bos>; ends with <eos> when finished
  double log_prob = 0;          // sum of the tokens' log-probabilities
  double score = 0;             // log_prob / length^alpha
  bool finished = false;
  std::vector<std::vector<float>>
      attention;  // per token, weights over the source (greedy, if asked)
};

struct SearchOptions {
  int64_t bos_id = 2, eos_id = 3;
  std::vector<int64_t> max_lengths;  // per sentence
};

// Each row picks its argmax until <eos> or its max length.
std::vector<Hypothesis> greedy_search(Stepper& stepper, int64_t batch, const SearchOptions& options,
                                      const Seq2SeqStepper* attention_source = nullptr);

struct BeamOptions {
  int64_t beam_size = 4;
  double length_penalty = 1.0;  // alpha: hypotheses are ranked by log_prob / length^alpha
  int64_t n_best = 1;
};

// stepper must hold batch * beam_size rows (sentence b's beams are rows b*K .. b*K + K-1).
// Returns, per sentence, its n_best hypotheses, best first.
std::vector<std::vector<Hypothesis>> beam_search(Stepper& stepper, int64_t batch,
                                                 const SearchOptions& options,
                                                 const BeamOptions& beam);

// max length per sentence = ceil(a * source length + b).
std::vector<int64_t> max_lengths_for(const Tensor& source_lengths, double a, double b);

}  // namespace kiln::seq2seq
