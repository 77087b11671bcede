// The data side of a training run, from corpus to encoded pairs: read (a TSV corpus, two aligned
// files or a generated task) -> split (train, valid, test) -> tokenizers (d2l words, or
// SentencePiece subwords trained on the training side) -> vocabularies -> ids.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/split.h"
#include "models/data/subword.h"
#include "models/data/tokenizer.h"
#include "models/data/vocab.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/shortlist.h"

namespace kiln::seq2seq {

// A random split as split.json keeps it in every checkpoint: the indices drawn, and the corpus
// they index (its name, size and fingerprint), so that resume and eval apply them to the same
// pairs or refuse.
struct SplitRecord {
  std::string corpus;       // the file(s) or the task, as messages name them
  int64_t bytes = 0;        // the file(s)' size (0 for a task), informative
  int64_t pairs = 0;        // pairs read (after --max-pairs)
  std::string fingerprint;  // data::fingerprint of those pairs
  uint64_t seed = 0;
  data::SplitIndices indices;
};

// Loads the pairs the options describe and splits them (train, valid, test): consecutive slices
// (train_pairs, valid_pairs, test_pairs; or the last valid_fraction when random_split is false),
// separate validation / test files (data_valid, data_test), or else a seeded random split. `op`
// names the command in errors ("train", "eval"). With `checkpoint`, a random split is the one in
// its split.json, refused with a message naming the file when the corpus is no longer the one it
// was drawn from; `record`, when given, receives the random split used (none for the others).
data::Split load_data(const TrainOptions& options,
                      const std::function<void(const std::string&)>& log, const char* op = "train",
                      const std::string& checkpoint = "",
                      std::optional<SplitRecord>* record = nullptr);

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
// --max-length: removes the pairs with more than max_length tokens on either side from `tokens`
// and from `pairs` (aligned with them); returns how many.
int64_t drop_long_pairs(data::TokenizedPairs& tokens, std::vector<data::SentencePair>& pairs,
                        int64_t max_length);
// The warning printed when cut_long_pairs cut `count` pairs.
std::string long_pairs_warning(int64_t count, int64_t max_source, int64_t max_target);

// Everything a training run needs from its data.
struct Prepared {
  data::Split split;
  std::optional<SplitRecord> split_record;    // a random split, saved as split.json
  int64_t max_length = -1, dropped_long = 0;  // --max-length and the training pairs it dropped
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  std::string tokenizer_dir;  // where the SentencePiece models are (empty for words)
  data::Vocab source_vocab, target_vocab;
  std::vector<data::EncodedPair> train;
  LexicalTable lexical;  // learned from `train`, for decoding with --shortlist
};

// Loads and splits the data, then trains the subword models into out_dir/tokenizers (or, with
// resume_dir, takes that checkpoint's tokenizers and vocabularies) and encodes the training pairs.
// Sets options.model's vocabulary sizes and options.punctuation_spacing (from the training
// targets). Learns the lexical table of the vocabulary shortlist from the encoded pairs.
Prepared prepare(TrainOptions& options, const std::string& out_dir, const std::string& resume_dir,
                 const std::function<void(const std::string&)>& log);

}  // namespace kiln::seq2seq
