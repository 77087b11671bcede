// d2l.ai's word tokenizer for the fra-eng data (MTFraEng._preprocess and _tokenize in d2l 1.0):
//   1. U+202F (narrow no-break space) and U+00A0 (no-break space) become ' ';
//   2. lowercase;
//   3. a ' ' goes before each of , . ! ? unless it is the first character or already follows ' ';
//   4. split on ' ' and drop empty tokens.
// "Go." -> "go ." -> {"go", "."};  "Va\u202f!" -> "va !" -> {"va", "!"}.
//
// Lowercasing follows Python's str.lower() for ASCII, Latin-1 (À..Þ -> à..þ, not ×), Latin
// Extended-A (Œ -> œ, Ÿ -> ÿ, İ -> "i̇" as Python) and basic Cyrillic (U+0400..U+042F); other code
// points and bytes that are not valid UTF-8 pass through unchanged. d2l appends <eos> while
// tokenizing; here the batcher does that (batching.h).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/data/corpus.h"

namespace kiln::data {

// Steps 1-3 above.
std::string preprocess_d2l(std::string_view text);

// Step 4: splits on ASCII ' ' only (as d2l's str.split(' ')), dropping empty tokens.
std::vector<std::string> tokenize_words(std::string_view preprocessed);

// tokenize_words(preprocess_d2l(text)).
std::vector<std::string> tokenize_d2l(std::string_view text);

// The tokens joined with single spaces (the inverse of tokenize_words up to spacing).
std::string detokenize(const std::vector<std::string>& tokens);

// Lowercase of one code point per the rules above; code points without a rule map to themselves.
// (U+0130 İ lowercases to two code points in Python; to_lower_utf8 handles that one itself.)
char32_t to_lower(char32_t code_point);

// The whole string lowercased per the rules above.
std::string to_lower_utf8(std::string_view text);

// Both sides of every pair through tokenize_d2l.
struct TokenizedPairs {
  std::vector<std::vector<std::string>> source, target;
};
TokenizedPairs tokenize_pairs(const std::vector<SentencePair>& pairs);

}  // namespace kiln::data
