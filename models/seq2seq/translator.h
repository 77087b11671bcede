// Translator: a trained model with its tokenizers and vocabularies, what a checkpoint folder
// holds, ready to translate sentences (greedy or beam search) and to score pairs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/data/corpus.h"
#include "models/data/subword.h"
#include "models/data/vocab.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/search.h"
#include "models/seq2seq/shortlist.h"

namespace kiln::seq2seq {

struct TranslateOptions {
  int64_t beam_size = 1;        // 1: greedy
  int64_t n_best = 1;           // hypotheses returned per sentence (<= beam_size)
  double length_penalty = 1.0;  // alpha >= 0: score = log p / length^alpha, length with <eos>
  bool keep_attention = false;  // fill Hypothesis::attention (has_attention() must hold)
  int64_t batch_size = 64;      // sentences decoded together
  // > 0: each batch is decoded over a vocabulary shortlist (shortlist.h): the `shortlist` most
  // frequent target ids, the reserved ones and the lexical table's targets of the batch's source
  // ids; the softmax is over those alone. 0: the whole vocabulary.
  int64_t shortlist = 0;
};

struct Translator {
  std::shared_ptr<Seq2Seq> model;
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  data::Vocab source_vocab, target_vocab;
  TrainOptions options;
  Device device;
  // Further checkpoints decoded together with `model` as an ensemble (averaged log-probabilities
  // per step); empty: `model` alone. Same vocabularies and tokenizers (load checks). Last, so
  // the aggregate initialisations of the fields above stay valid.
  std::vector<std::shared_ptr<Seq2Seq>> ensemble = {};
  // The first checkpoint's lexical table (empty when its folder has none) and its folder.
  LexicalTable lexical = {};
  std::string folder = {};
  // The decoder weights' prepared copies (transposes, model.h), made by the first batch that
  // needs them and kept for the rest: `model` and `ensemble` must not change while this
  // Translator (or a copy of it) decodes; a changed model needs a new Translator.
  std::shared_ptr<DecodingWeightsCache> prepared = std::make_shared<DecodingWeightsCache>();

  // Loads a checkpoint folder; an empty `device` means the one it was trained on.
  static Translator load(const std::string& checkpoint_dir, const std::string& device = "");
  // Several folders as one ensemble: the first gives the tokenizers and options; a folder whose
  // vocabularies or tokenizer differ from the first's is an error naming both.
  static Translator load(const std::vector<std::string>& checkpoint_dirs,
                         const std::string& device = "");
  // One sentence per input, results in input order; greedy when beam_size == 1. Returns n_best
  // hypotheses per sentence, or one empty hypothesis (no tokens, score 0) for a sentence that
  // tokenizes to nothing. Sentences are sorted by length and cut into batches of batch_size, so a
  // batch pads little. Every hypothesis' score is log_prob / length^alpha (greedy included).
  // Sources longer than options.max_source_length tokens are cut to it (count_long_sources tells
  // how many will be), so decoding time is bounded whatever the input. Attention rows are cut to
  // the sentence's own source (its tokens and <eos>).
  std::vector<std::vector<Hypothesis>> translate(const std::vector<std::string>& sentences,
                                                 const TranslateOptions& how) const;
  // The errors translate gives for `how` (a bad option, --shortlist without a lexical table),
  // for a caller to raise before it reads its input.
  void check(const TranslateOptions& how) const;
  std::vector<std::vector<Hypothesis>> translate(const std::vector<std::string>& sentences,
                                                 int64_t beam_size = 1, int64_t n_best = 1,
                                                 double length_penalty = 1.0,
                                                 bool keep_attention = false) const;
  // Whether decoding yields attention (some model of the ensemble has it).
  bool has_attention() const;
  // The source tokens the model reads for a sentence (tokenized, cut to max_source_length).
  std::vector<std::string> source_tokens(const std::string& sentence) const;
  std::string to_text(const Hypothesis& hypothesis) const;
  // The same with each <unk> replaced by the source token with the highest attention weight at
  // that step (the hypothesis needs its attention; <eos>'s column is never chosen).
  std::string to_text(const Hypothesis& hypothesis, const std::string& source) const;
  // Mean per-token cross-entropy (teacher forcing) over pairs, each side cut to the length cap;
  // perplexity = exp of it.
  double mean_nll(const std::vector<data::SentencePair>& pairs) const;
  // The same as a sum and its token count (mean_nll = nll / tokens), for a mean over pairs
  // scored in parts (validation split over the ranks of a data-parallel run).
  struct NllSum {
    double nll = 0;
    int64_t tokens = 0;
  };
  NllSum total_nll(const std::vector<data::SentencePair>& pairs) const;
  // How many sources, or pairs, are over the length cap (with `strict`, an error names the
  // first such pair instead).
  int64_t count_long_sources(const std::vector<std::string>& sentences) const;
  int64_t count_long_pairs(const std::vector<data::SentencePair>& pairs, bool strict) const;
};

}  // namespace kiln::seq2seq
