// Integers 0..999,999 as words, for the generated "numbers-en" / "numbers-fr" tasks.
//
// English, American style without "and", words separated by spaces:
//   1234 -> "one thousand two hundred thirty four".
// French, traditional spelling (before the 1990 reform): hyphens join tens and units below one
// hundred except around "et"; "et un" / "et onze" after vingt..soixante but not after
// quatre-vingt; "cents" and "quatre-vingts" take the plural s only at the very end of the number
// (not before another word, nor before "mille"); "mille" is invariable and alone means 1000:
//   21 "vingt et un", 71 "soixante et onze", 80 "quatre-vingts", 81 "quatre-vingt-un",
//   200 "deux cents", 201 "deux cent un", 2000 "deux mille", 80000 "quatre-vingt mille".
// Words are separated by spaces; a hyphenated form ("quatre-vingt-dix-neuf") is one token.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::data {

std::string number_to_english(int64_t n);
std::string number_to_french(int64_t n);

}  // namespace kiln::data
