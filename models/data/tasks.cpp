// Generated translation tasks (see tasks.h).
#include "models/data/tasks.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "core/error.h"
#include "models/data/number_words.h"
#include "models/data/shuffle.h"

namespace kiln::data {

namespace {

using Generator = std::mt19937_64;

int64_t uniform_int(Generator& generator, int64_t low, int64_t high) {  // [low, high]
  return low +
         static_cast<int64_t>(uniform_below(generator, static_cast<uint64_t>(high - low + 1)));
}

// "a c b": 3..10 letters from a..t.
std::vector<std::string> random_symbols(Generator& generator) {
  const int64_t length = uniform_int(generator, 3, 10);
  std::vector<std::string> symbols;
  for (int64_t i = 0; i < length; ++i) {
    symbols.emplace_back(1, static_cast<char>('a' + uniform_int(generator, 0, 19)));
  }
  return symbols;
}

std::string join(const std::vector<std::string>& tokens, const char* separator = " ") {
  std::string out;
  for (const std::string& token : tokens) out += (out.empty() ? "" : separator) + token;
  return out;
}

// "407" -> "4 0 7".
std::string spaced_digits(const std::string& digits) {
  std::string out;
  for (char c : digits) {
    if (!out.empty()) out += ' ';
    out += c;
  }
  return out;
}

int days_in_month(int64_t year, int64_t month) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : days[month - 1];
}

SentencePair make_pair(const std::string& name, Generator& generator) {
  if (name == "copy" || name == "reverse") {
    std::vector<std::string> symbols = random_symbols(generator);
    const std::string source = join(symbols);
    if (name == "reverse") std::reverse(symbols.begin(), symbols.end());
    return {source, join(symbols)};
  }
  if (name == "numbers-en" || name == "numbers-fr") {
    const int64_t n = uniform_int(generator, 0, 9999);
    const std::string words = name == "numbers-en" ? number_to_english(n) : number_to_french(n);
    return {spaced_digits(std::to_string(n)), words};
  }
  // dates
  static const char* const months[12] = {"january",   "february", "march",    "april",
                                         "may",       "june",     "july",     "august",
                                         "september", "october",  "november", "december"};
  const int64_t year = uniform_int(generator, 1950, 2049);
  const int64_t month = uniform_int(generator, 1, 12);
  const int64_t day = uniform_int(generator, 1, days_in_month(year, month));
  char iso[16];
  std::snprintf(iso, sizeof(iso), "%04d-%02d-%02d", static_cast<int>(year), static_cast<int>(month),
                static_cast<int>(day));
  return {spaced_digits(iso),
          std::to_string(day) + " " + months[month - 1] + " " + std::to_string(year)};
}

}  // namespace

std::vector<std::string> task_names() {
  return {"copy", "reverse", "numbers-en", "numbers-fr", "dates"};
}

std::vector<SentencePair> generate_task(const std::string& name, int64_t count, uint64_t seed) {
  const std::vector<std::string> names = task_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    KILN_FAIL("generate_task: unknown task '", name, "'; known tasks: ", join(names, ", "));
  }
  KILN_CHECK(count >= 0, "generate_task: count must be >= 0, got ", count);
  Generator generator(seed);
  std::vector<SentencePair> pairs;
  pairs.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) pairs.push_back(make_pair(name, generator));
  return pairs;
}

}  // namespace kiln::data
