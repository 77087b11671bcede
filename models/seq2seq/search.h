// Inference without a tape: greedy decoding and batched beam search (docs/beam_search.md).
// Both work on a `Stepper`: anything that turns the last tokens of N rows into next-token
// log-probabilities and can reorder its rows; Seq2SeqStepper adapts a model, and tests use a
// hand-built table.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "models/seq2seq/model.h"

namespace kiln::seq2seq {

// A step's n best next tokens per row: what the searches rank.
struct StepTop {
  Tensor values;        // [N, n] log-probabilities, largest first
  Tensor ids;           // [N, n] their columns (i64), ties to the lower column
  int64_t columns = 0;  // V: the columns of the step's log-probabilities
};

class Stepper {
 public:
  virtual ~Stepper() = default;
  // tokens [N] (on the host) -> log-probabilities [N, V] of the next token; advances every row.
  virtual Tensor step(const Tensor& tokens) = 0;
  // The same step, as each row's n best: topk(step(tokens), n) unless a stepper ranks them
  // without making [N, V] (Seq2SeqStepper: log_softmax_topk on its logits). Same values and ids.
  virtual StepTop step_top(const Tensor& tokens, int64_t n);
  // Row i of the new state = row index[i] (host) of the current one (beams follow their parents).
  // index may be shorter than the current rows: the searches drop the rows of finished sentences.
  virtual void reorder(const Tensor& index) = 0;
  // Called by beam_search before its first step, when every beam of a sentence is the same (only
  // beam 0 is alive): a stepper built with `repeat` rows per sentence that has not stepped yet
  // may take that first step on one row per sentence, and its first reorder then makes the beams
  // (index[i] = the sentence of row i). Returns whether it will; the default keeps every row.
  virtual bool first_step_one_row_per_sentence() { return false; }
  // [N, S] weights over the source of the last step, or an undefined tensor when the rows have
  // no attention (a model without it, or one not asked to keep it).
  virtual Tensor last_attention() const { return Tensor(); }
};

// Decodes with a Seq2Seq model; rows = sentences (greedy) or sentences x beams (beam search).
class Seq2SeqStepper : public Stepper {
 public:
  // Encodes the batch; `repeat` copies each sentence that many times (beams are adjacent rows),
  // at the first step or reorder (or at the first reorder after a first step on one row per
  // sentence, first_step_one_row_per_sentence).
  // With `shortlist` (target ids [K], ascending), each step's log-probabilities are [N, K]: the
  // log_softmax over those ids alone (SearchOptions::shortlist maps the columns back). With
  // `prepared`, the decoder's prepared weights come from it (made there once for many batches)
  // instead of being made for this batch alone.
  Seq2SeqStepper(const Seq2Seq& model, const Tensor& source, const Tensor& source_lengths,
                 int64_t repeat = 1, bool keep_attention = false,
                 const Tensor& shortlist = Tensor(), DecodingWeightsCache* prepared = nullptr);
  Tensor step(const Tensor& tokens) override;
  StepTop step_top(const Tensor& tokens, int64_t n) override;
  void reorder(const Tensor& index) override;
  bool first_step_one_row_per_sentence() override;
  Tensor last_attention() const override { return attention_; }

 private:
  // The rows start as one per sentence; the first step or reorder repeats them (`repeat_` each)
  // unless first_step_one_row_per_sentence took the first step on those rows.
  void repeat_rows_if_pending();
  // Advances every row; its output layer's product plus the bias, or the product alone when
  // `add_bias` is false (step_top adds it in log_softmax_topk).
  Tensor logits(const Tensor& tokens, bool add_bias = true);
  const Seq2Seq& model_;
  int64_t repeat_;
  bool repeat_pending_;
  EncoderOutput enc_;
  DecoderState state_;
  bool keep_attention_;
  Tensor attention_;
  OutputRows output_rows_;  // the shortlist's rows, or every row
};

// Several models decoded as one (an ensemble): each step's log-probabilities are the mean of the
// members' log-probabilities [N, V], and the attention the mean of those members that have it.
// Every member holds the same rows; reorder moves them all. One member is returned unchanged.
class EnsembleStepper : public Stepper {
 public:
  explicit EnsembleStepper(std::vector<std::unique_ptr<Stepper>> members);
  Tensor step(const Tensor& tokens) override;
  void reorder(const Tensor& index) override;
  bool first_step_one_row_per_sentence() override;
  Tensor last_attention() const override;

 private:
  std::vector<std::unique_ptr<Stepper>> members_;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without <bos>; ends with <eos> when finished
  double log_prob = 0;          // sum of the tokens' log-probabilities
  double score = 0;             // log_prob / length^alpha
  bool finished = false;
  // Per token, its weights over the source (SearchOptions::keep_attention): the rows of the
  // step that emitted it, followed through beam reorders.
  std::vector<std::vector<float>> attention;
};

struct SearchOptions {
  int64_t bos_id = 2, eos_id = 3;
  std::vector<int64_t> max_lengths;  // per sentence
  bool keep_attention = false;       // fill Hypothesis::attention (the stepper must have it)
  // The target id of each column of the stepper's log-probabilities (a vocabulary shortlist);
  // empty: column v is id v.
  std::vector<int64_t> shortlist = {};
};

// Each row picks its argmax until <eos> or its max length; a finished row leaves the batch.
// Scores are the raw log-probabilities; length_normalized gives the beam's ranking score.
std::vector<Hypothesis> greedy_search(Stepper& stepper, int64_t batch,
                                      const SearchOptions& options);

struct BeamOptions {
  int64_t beam_size = 4;
  double length_penalty = 1.0;  // alpha: hypotheses are ranked by log_prob / length^alpha
  int64_t n_best = 1;
};

// stepper must hold batch * beam_size rows (sentence b's beams are rows b*K .. b*K + K-1); a
// sentence whose search is done leaves the batch (its K rows are dropped).
// Returns, per sentence, its n_best hypotheses, best first.
std::vector<std::vector<Hypothesis>> beam_search(Stepper& stepper, int64_t batch,
                                                 const SearchOptions& options,
                                                 const BeamOptions& beam);

// log_prob / length^alpha (length at least 1; alpha = 0: log_prob itself).
double length_normalized(double log_prob, size_t length, double alpha);

// max length per sentence = ceil(a * source length + b).
std::vector<int64_t> max_lengths_for(const Tensor& source_lengths, double a, double b);

}  // namespace kiln::seq2seq
