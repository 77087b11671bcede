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

namespace kiln::seq2seq {

struct Translator {
  std::shared_ptr<Seq2Seq> model;
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  data::Vocab source_vocab, target_vocab;
  TrainOptions options;
  Device device;

  // Loads a checkpoint folder; an empty `device` means the one it was trained on.
  static Translator load(const std::string& checkpoint_dir, const std::string& device = "");
  // One sentence per input; greedy when beam_size == 1. Returns n_best hypotheses per sentence,
  // or one empty hypothesis (no tokens, score 0) for a sentence that tokenizes to nothing.
  // Sources longer than options.max_source_length tokens are cut to it (count_long_sources tells
  // how many will be), so decoding time is bounded whatever the input.
  std::vector<std::vector<Hypothesis>> translate(const std::vector<std::string>& sentences,
                                                 int64_t beam_size = 1, int64_t n_best = 1,
                                                 double length_penalty = 1.0,
                                                 bool keep_attention = false) const;
  std::string to_text(const Hypothesis& hypothesis) const;
  // Mean per-token cross-entropy (teacher forcing) over pairs, each side cut to the length cap;
  // perplexity = exp of it.
  double mean_nll(const std::vector<data::SentencePair>& pairs) const;
  // How many sources, or pairs, are over the length cap (with `strict`, an error names the
  // first such pair instead).
  int64_t count_long_sources(const std::vector<std::string>& sentences) const;
  int64_t count_long_pairs(const std::vector<data::SentencePair>& pairs, bool strict) const;
};

}  // namespace kiln::seq2seq
