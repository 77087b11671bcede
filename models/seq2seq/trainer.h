// Training and using a Seq2Seq translator end to end: data (a TSV corpus, two aligned files or a
// generated task), d2l tokenization, vocabularies, length-bucketed batches, the training loop
// (teacher forcing or scheduled sampling, masked CE with label smoothing, clipping, optimizer and
// LR schedule, dropout), validation loss and BLEU per epoch, metrics as JSONL, a loss-curve SVG,
// checkpoints (last and best) and exact resume. The `kiln` CLI (examples/kiln.cpp) is a thin
// layer of flags over this.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/subword.h"
#include "models/data/vocab.h"
#include "models/seq2seq/search.h"

namespace kiln::seq2seq {

struct TrainOptions {
  // data: a TSV file, or two aligned files, or a generated task
  std::string data, data_source, data_target, task;
  int64_t task_size = 20000;
  int64_t max_pairs = -1;
  bool strict_data = false;  // a bad corpus line is fatal instead of skipped
  int64_t train_pairs = -1, valid_pairs = 0, test_pairs = 0;  // -1 train: all but valid + test
  double valid_fraction = 0.05;     // used when valid_pairs == 0 and test_pairs == 0 and train_pairs == -1
  bool vocab_from_valid = false;    // d2l 1.0 builds the vocabulary from train + valid
  int64_t min_freq = 1, max_vocab = -1;
  std::string tokenizer = "word";  // or "sentencepiece": subwords trained on the training side
  int64_t subword_vocab = 4000;    // SentencePiece pieces per side
  int64_t num_steps = -1, batch_size = 64;
  // model
  ModelConfig model;
  // optimization
  std::string optimizer = "adam", schedule = "constant";
  double lr = 0.005, weight_decay = 0, momentum = 0.9;
  int64_t warmup = 0, step_size = 1;
  double gamma = 0.5, clip = 1.0, label_smoothing = 0, teacher_forcing = 1.0;
  int64_t epochs = 10;
  uint64_t seed = 1;
  std::string device = "cpu";
  // reporting
  int64_t bleu_sentences = 200;  // validation sentences translated (greedy) for BLEU each epoch
  double max_length_a = 1.5, max_length_b = 5;  // decoding length: a * source length + b
  std::vector<std::string> sample_sentences;    // translated and printed after training
  std::vector<std::string>
      sample_references;  // their references for d2l's BLEU (else looked up in the data)
  bool quiet = false;

  void validate() const;
  std::string to_json() const;
  static TrainOptions from_json(const std::string& text, const std::string& source);
};

// A loaded model ready to translate: what a checkpoint folder holds.
struct Translator {
  std::shared_ptr<Seq2Seq> model;
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  data::Vocab source_vocab, target_vocab;
  TrainOptions options;
  Device device;

  static Translator load(const std::string& checkpoint_dir, const std::string& device = "");
  // One sentence per input; greedy when beam_size == 1. Returns n_best hypotheses per sentence.
  std::vector<std::vector<Hypothesis>> translate(const std::vector<std::string>& sentences, int64_t beam_size = 1,
                                                 int64_t n_best = 1, double length_penalty = 1.0,
                                                 bool keep_attention = false) const;
  std::string to_text(const Hypothesis& hypothesis) const;
  // Mean per-token cross-entropy (teacher forcing) over pairs; perplexity = exp of it.
  double mean_nll(const std::vector<data::SentencePair>& pairs) const;
};

struct EpochMetrics {
  int64_t epoch = 0, steps = 0;
  double train_loss = 0, valid_loss = 0, valid_bleu = 0, valid_exact = 0, seconds = 0, tokens_per_second = 0;
  double lr = 0, grad_norm = 0;
};

// Trains into `out_dir` (out_dir/last, out_dir/best, metrics.jsonl, loss.svg). With resume_dir,
// continues from that checkpoint (its options, vocabularies, weights, optimizer and RNG state).
// `log` receives every line printed. Returns the metrics of every epoch run.
std::vector<EpochMetrics> train(const TrainOptions& options, const std::string& out_dir,
                                const std::string& resume_dir = "",
                                const std::function<void(const std::string&)>& log = nullptr);

// Loads the pairs the options describe and splits them (train, valid, test).
data::Split load_data(const TrainOptions& options, const std::function<void(const std::string&)>& log);

// The tokenizers a checkpoint folder (or a run's output) was made with.
std::pair<std::shared_ptr<data::Tokenizer>, std::shared_ptr<data::Tokenizer>> load_tokenizers(const TrainOptions& options,
                                                                                              const std::string& dir);

}  // namespace kiln::seq2seq
