// Random train / valid / test splits and corpus fingerprints (see split.h).
#include "models/data/split.h"

#include <cstdio>
#include <numeric>
#include <random>

#include "core/error.h"
#include "models/data/shuffle.h"

namespace kiln::data {

SplitIndices random_split(int64_t pairs, int64_t valid, int64_t test, uint64_t seed) {
  KILN_CHECK(pairs >= 0 && valid >= 0 && test >= 0, "random_split: sizes must be >= 0, got ", pairs,
             " pairs, ", valid, " valid, ", test, " test");
  KILN_CHECK(valid + test <= pairs, "random_split: asked for ", valid, " valid + ", test,
             " test = ", valid + test, " pairs, but there are only ", pairs);
  std::vector<int64_t> order(static_cast<size_t>(pairs));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 generator(seed);
  shuffle_in_place(order, generator);
  SplitIndices out;
  out.valid.assign(order.begin(), order.begin() + valid);
  out.test.assign(order.begin() + valid, order.begin() + valid + test);
  return out;
}

Split apply_split(const std::vector<SentencePair>& pairs, const SplitIndices& indices) {
  std::vector<char> held_out(pairs.size(), 0);
  Split split;
  const auto take = [&](const std::vector<int64_t>& from, std::vector<SentencePair>& into,
                        const char* name) {
    for (int64_t i : from) {
      KILN_CHECK(i >= 0 && i < static_cast<int64_t>(pairs.size()), "apply_split: ", name, " index ",
                 i, " is outside the corpus's ", pairs.size(), " pairs");
      KILN_CHECK(!held_out[static_cast<size_t>(i)], "apply_split: pair index ", i,
                 " is listed twice (", name, ")");
      held_out[static_cast<size_t>(i)] = 1;
      into.push_back(pairs[static_cast<size_t>(i)]);
    }
  };
  take(indices.valid, split.valid, "valid");
  take(indices.test, split.test, "test");
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (!held_out[i]) split.train.push_back(pairs[i]);
  }
  return split;
}

std::string fingerprint(const std::vector<SentencePair>& pairs) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a offset basis and prime
  const auto add = [&](const std::string& text) {
    for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  };
  for (const SentencePair& pair : pairs) {
    add(pair.source);
    add("\t");
    add(pair.target);
    add("\n");
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

}  // namespace kiln::data
