// Integers as English and French words (rules in number_words.h).
#include "models/data/number_words.h"

#include "core/error.h"

namespace kiln::data {

namespace {

void check_range(const char* op, int64_t n) {
  KILN_CHECK(n >= 0 && n <= 999999, op, ": ", n, " is outside the supported range 0..999999");
}

// Joins two word groups with a space, skipping an empty one.
std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + " " + b;
}

// ---- English -----------------------------------------------------------------------------------

const char* const english_small[20] = {"zero",    "one",     "two",       "three",    "four",
                                       "five",    "six",     "seven",     "eight",    "nine",
                                       "ten",     "eleven",  "twelve",    "thirteen", "fourteen",
                                       "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
const char* const english_tens[10] = {"",      "",      "twenty",  "thirty", "forty",
                                      "fifty", "sixty", "seventy", "eighty", "ninety"};

// 1..999; "" for 0.
std::string english_below_1000(int64_t n) {
  std::string hundreds = n >= 100 ? std::string(english_small[n / 100]) + " hundred" : "";
  const int64_t rest = n % 100;
  std::string tail;
  if (rest >= 20) {
    tail = english_tens[rest / 10];
    if (rest % 10 != 0) tail = join(tail, english_small[rest % 10]);
  } else if (rest > 0) {
    tail = english_small[rest];
  }
  return join(hundreds, tail);
}

// ---- French ------------------------------------------------------------------------------------

const char* const french_small[17] = {"zéro",  "un",     "deux",     "trois",  "quatre", "cinq",
                                      "six",   "sept",   "huit",     "neuf",   "dix",    "onze",
                                      "douze", "treize", "quatorze", "quinze", "seize"};
const char* const french_tens[7] = {"", "", "vingt", "trente", "quarante", "cinquante", "soixante"};

// 1..99. `last`: nothing follows in the number (only then does quatre-vingts take its s).
std::string french_below_100(int64_t n, bool last) {
  if (n < 17) return french_small[n];
  if (n < 20) return std::string("dix-") + french_small[n - 10];
  const int64_t tens = n / 10, unit = n % 10;
  if (tens <= 6) {
    const std::string base = french_tens[tens];
    if (unit == 0) return base;
    if (unit == 1) return base + " et un";
    return base + "-" + french_small[unit];
  }
  if (tens == 7) {  // soixante-dix .. soixante-dix-neuf, with "soixante et onze"
    if (unit == 1) return "soixante et onze";
    return "soixante-" + french_below_100(10 + unit, last);
  }
  if (n == 80) return last ? "quatre-vingts" : "quatre-vingt";
  return "quatre-vingt-" + french_below_100(n - 80, last);  // 81..99, never with "et"
}

// 1..999; "" for 0.
std::string french_below_1000(int64_t n, bool last) {
  const int64_t hundreds = n / 100, rest = n % 100;
  std::string head;
  if (hundreds == 1) {
    head = "cent";
  } else if (hundreds > 1) {
    head = std::string(french_small[hundreds]) + " cent" + (rest == 0 && last ? "s" : "");
  }
  return join(head, rest > 0 ? french_below_100(rest, last) : "");
}

}  // namespace

std::string number_to_english(int64_t n) {
  check_range("number_to_english", n);
  if (n == 0) return english_small[0];
  const int64_t thousands = n / 1000;
  return join(thousands > 0 ? english_below_1000(thousands) + " thousand" : "",
              english_below_1000(n % 1000));
}

std::string number_to_french(int64_t n) {
  check_range("number_to_french", n);
  if (n == 0) return french_small[0];
  const int64_t thousands = n / 1000;
  std::string head;
  if (thousands == 1) {
    head = "mille";
  } else if (thousands > 1) {
    head = french_below_1000(thousands, /*last=*/false) + " mille";
  }
  return join(head, french_below_1000(n % 1000, /*last=*/true));
}

}  // namespace kiln::data
