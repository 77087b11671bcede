// The vocabulary shortlist of decoding (Marian's lexical shortlist): a lexical table learned from
// the encoded training pairs, per source id its likeliest target ids, saved in every checkpoint
// as lexical_shortlist.txt. `kiln translate --shortlist K` decodes each batch over the K most
// frequent target ids (the vocabulary is ordered by frequency), the reserved ids and the table's
// targets of every source id of the batch: the output layer and the softmax cover only those.
//
// The table is IBM Model 1 (Brown et al. 1993): EM over the pairs estimates p(t | s) with each
// target token aligned to one source token or to NULL; a few iterations rank a source word's
// translations well, which is all a shortlist needs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/data/batching.h"

namespace kiln::seq2seq {

struct LexicalOptions {
  int64_t iterations = 5;   // EM iterations of IBM Model 1
  int64_t top = 100;        // targets kept per source id, likeliest first
  double min_prob = 0.001;  // and only those with p(t | s) at least this
  // Memory bound: EM keeps ~20 bytes per (source token, target token) link of every pair it reads,
  // so it reads the pairs in order while their links fit this budget (50M: ~1 GB; d2l's fra.txt
  // has ~10M). A WMT-sized corpus is learned from its first few million pairs.
  int64_t max_links = 50'000'000;
};

struct LexicalTable {
  static constexpr const char* file_name = "lexical_shortlist.txt";

  int64_t source_vocab = 0, target_vocab = 0;
  std::vector<std::vector<int64_t>> targets;  // [source_vocab]: target ids, likeliest first

  bool empty() const { return targets.empty(); }

  // Learns the table from encoded pairs (ids < the vocabulary sizes; <pad>, <bos> and <eos> are
  // skipped on both sides: the decoding candidates always hold them).
  static LexicalTable learn(const std::vector<data::EncodedPair>& pairs, int64_t source_vocab,
                            int64_t target_vocab, const LexicalOptions& options = {});

  // The decoding candidates of a batch, ascending: the reserved ids, the `k` most frequent
  // target ids, and the table's targets of every id of `sources`.
  std::vector<int64_t> candidates(const std::vector<std::vector<int64_t>>& sources,
                                  int64_t k) const;

  // The file: a header line "kiln-lexical-shortlist 1 <source_vocab> <target_vocab>", then one
  // line per source id (line 2 is id 0): its target ids, likeliest first, space-separated.
  std::string to_text() const;
  // Errors name `path`:line (a bad header, an id out of range, a line count unlike the header's).
  static LexicalTable parse(std::string_view text, const std::string& path);
  // `dir`/lexical_shortlist.txt, written durably (core/durable_file.h).
  void save(const std::string& dir) const;
  // The table of checkpoint folder `dir`, or an empty one when it has none.
  static LexicalTable load_if_present(const std::string& dir);
};

}  // namespace kiln::seq2seq
