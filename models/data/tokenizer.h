// d2l.ai's word tokenizer for the fra-eng data (MTFraEng._preprocess and _tokenize in d2l 1.0):
//   1. U+202F (narrow no-break space) and U+00A0 (no-break space) become ' ';
//   2. lowercase (d2l always does; kiln only with `lowercase`, TrainOptions::lowercase);
//   3. a ' ' goes before each of , . ! ? unless it is the first character or already follows ' ';
//   4. split on ' ' and drop empty tokens.
// "Go." -> "go ." -> {"go", "."};  "Va\u202f!" -> "va !" -> {"va", "!"}.
//
// Lowercasing follows Python's str.lower() for ASCII, Latin-1 (À..Þ -> à..þ, not ×), Latin
// Extended-A (Œ -> œ, Ÿ -> ÿ, İ -> "i̇" as Python) and basic Cyrillic (U+0400..U+042F); other code
// points and bytes that are not valid UTF-8 pass through unchanged. d2l appends <eos> while
// tokenizing; here the batcher does that (batching.h).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "models/data/corpus.h"

namespace kiln::data {

// Steps 1-3 above (step 2 only with `lowercase`).
std::string preprocess_d2l(std::string_view text, bool lowercase = true);

// Step 4: splits on ASCII ' ' only (as d2l's str.split(' ')), dropping empty tokens.
std::vector<std::string> tokenize_words(std::string_view preprocessed);

// tokenize_words(preprocess_d2l(text, lowercase)).
std::vector<std::string> tokenize_d2l(std::string_view text, bool lowercase = true);

// The tokens joined with single spaces (the inverse of tokenize_words up to spacing).
std::string detokenize(const std::vector<std::string>& tokens);

// The inverse of step 3: which separator stood before each of , . ! ? in the original text, by
// mark ("," "." "!" "?"): "" (English "Go."), " ", U+202F or U+00A0 (French "Va !"). A mark
// missing from the map keeps d2l's ' '. Learned from the training targets, stored in config.json.
using PunctuationSpacing = std::map<std::string, std::string>;

// The separators learn_punctuation_spacing can give, and so the only ones config.json may hold.
bool is_punctuation_separator(std::string_view separator);

// Per mark, the separator that most often preceded it in `texts` (raw corpus sentences; ties go to
// the first of "", " ", U+202F, U+00A0). A mark right after another mark ("...", "?!") or at the
// start of a sentence does not count: detokenize_d2l joins those without a separator anyway.
PunctuationSpacing learn_punctuation_spacing(const std::vector<std::string>& texts);

// Normal text from d2l tokens: the tokens joined with ' ', except that a token starting with one
// of , . ! ? gets the learned separator instead (d2l's split of "3.5" into "3" ".5" is undone the
// same way), or none right after another such mark ("wait . . ." -> "wait...").
// {"va", "!"} with {"!": U+202F} -> "va\u202f!"; {"go", "."} with {".": ""} -> "go.".
std::string detokenize_d2l(const std::vector<std::string>& tokens,
                           const PunctuationSpacing& spacing);

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
