// The data side of a training run, from corpus to encoded pairs: read (a TSV corpus, two aligned
// files or a generated task) -> split (train, valid, test) -> tokenizers (d2l words, or
// SentencePiece subwords trained on the training side) -> vocabularies -> ids.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/subword.h"
#include "models/data/tokenizer.h"
#include "models/data/vocab.h"
#include "models/seq2seq/options.h"

namespace kiln::seq2seq {

// Loads the pairs the options describe and splits them (train, valid, test). `op` names the
// command in errors ("train", "eval").
data::Split load_data(const TrainOptions& options,
                      const std::function<void(const std::string&)>& log, const char* op = "train");

// The tokenizers a checkpoint folder (or a run's output) was made with.
std::pair<std::shared_ptr<data::Tokenizer>, std::shared_ptr<data::Tokenizer>> load_tokenizers(
    const TrainOptions& options, const std::string& dir);

// Both sides of every pair through their tokenizers.
data::TokenizedPairs tokenize_with(const data::Tokenizer& source, const data::Tokenizer& target,
                                   const std::vector<data::SentencePair>& pairs);

// The length cap (TrainOptions::max_source_length / max_target_length): cuts every sentence
// longer than its side's limit to that many tokens and returns how many pairs were cut; with
// `strict`, a long pair is an error naming `op`, the pair and the limit instead.
int64_t cut_long_pairs(data::TokenizedPairs& pairs, int64_t max_source, int64_t max_target,
                       bool strict, const char* op);
// The warning printed when cut_long_pairs cut `count` pairs.
std::string long_pairs_warning(int64_t count, int64_t max_source, int64_t max_target);

// Everything a training run needs from its data.
struct Prepared {
  data::Split split;
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  std::string tokenizer_dir;  // where the SentencePiece models are (empty for words)
  data::Vocab source_vocab, target_vocab;
  std::vector<data::EncodedPair> train;
};

// Loads and splits the data, then trains the subword models into out_dir/tokenizers (or, with
// resume_dir, takes that checkpoint's tokenizers and vocabularies) and encodes the training pairs.
// Sets options.model's vocabulary sizes and options.punctuation_spacing (from the training
// targets).
Prepared prepare(TrainOptions& options, const std::string& out_dir, const std::string& resume_dir,
                 const std::function<void(const std::string&)>& log);

}  // namespace kiln::seq2seq
