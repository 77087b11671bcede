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

// Loads the pairs the options describe and splits them (train, valid, test).
data::Split load_data(const TrainOptions& options,
                      const std::function<void(const std::string&)>& log);

// The tokenizers a checkpoint folder (or a run's output) was made with.
std::pair<std::shared_ptr<data::Tokenizer>, std::shared_ptr<data::Tokenizer>> load_tokenizers(
    const TrainOptions& options, const std::string& dir);

// Both sides of every pair through their tokenizers.
data::TokenizedPairs tokenize_with(const data::Tokenizer& source, const data::Tokenizer& target,
                                   const std::vector<data::SentencePair>& pairs);

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
// Sets options.model's vocabulary sizes.
Prepared prepare(TrainOptions& options, const std::string& out_dir, const std::string& resume_dir,
                 const std::function<void(const std::string&)>& log);

}  // namespace kiln::seq2seq
