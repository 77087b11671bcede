// A seeded random split of a corpus into train / valid / test, and a fingerprint of the corpus so
// that a saved split (seq2seq's split.json) is only ever applied to the pairs it was drawn from.
// The corpora kiln reads are often ordered (d2l's fra.txt by length), so consecutive slices
// (corpus.h, split_pairs) give a validation set unlike the training one; a random split does not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/data/corpus.h"

namespace kiln::data {

// Indices into a corpus's pairs: valid and test in the order drawn (so the first k of either are
// a random sample of it), disjoint; every other pair is training.
struct SplitIndices {
  std::vector<int64_t> valid, test;
};

// A permutation of [0, pairs) by Fisher-Yates with std::mt19937_64(seed) (shuffle.h: the same on
// every platform); its first `valid` entries are validation, the next `test` testing. Asking for
// more than `pairs` in all throws with the numbers.
SplitIndices random_split(int64_t pairs, int64_t valid, int64_t test, uint64_t seed);

// The split as pairs: valid and test in the order of `indices`, train the rest in corpus order.
// Throws when an index is out of range or repeated (a corrupt saved split).
Split apply_split(const std::vector<SentencePair>& pairs, const SplitIndices& indices);

// FNV-1a (64 bit) over every pair as "source\ttarget\n": one changed character, pair added,
// dropped or moved changes it. Written as 16 hex digits.
std::string fingerprint(const std::vector<SentencePair>& pairs);

}  // namespace kiln::data
