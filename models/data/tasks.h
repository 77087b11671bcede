// Built-in translation tasks generated from a seed: no download, same pairs for the same
// (name, count, seed) on every machine (std::mt19937_64 and shuffle.h's uniform_below).
//
//   copy        "c a t e"              -> "c a t e"         3..10 tokens from the 20 letters a..t
//   reverse     "c a t e"              -> "e t a c"
//   numbers-en  "4 0 7"                -> "four hundred seven"        n uniform in 0..9999
//   numbers-fr  "4 0 7"                -> "quatre cent sept"          (number_words.h rules)
//   dates       "2 0 2 4 - 0 3 - 0 7"  -> "7 march 2024"   a real calendar date: year uniform in
//                                       1950..2049, month in 1..12, day in 1..days of that month
// Source and target are space-separated lowercase tokens, ready for tokenize_words (tokenize_d2l
// leaves them unchanged too). numbers-en and numbers-fr with the same seed draw the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/data/corpus.h"

namespace kiln::data {

// {"copy", "reverse", "numbers-en", "numbers-fr", "dates"}.
std::vector<std::string> task_names();

// `count` pairs of task `name`; an unknown name throws, listing the known ones.
std::vector<SentencePair> generate_task(const std::string& name, int64_t count, uint64_t seed);

}  // namespace kiln::data
