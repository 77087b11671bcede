// d2l's preprocessing and word tokenizer, with a UTF-8 aware lowercase (see tokenizer.h).
#include "models/data/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "models/data/utf8.h"

namespace kiln::data {

char32_t to_lower(char32_t c) {
  if (c >= U'A' && c <= U'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE) return c == 0xD7 ? c : c + 32;  // À..Þ -> à..þ, except × (U+00D7)
  // Latin Extended-A: upper/lower pairs, uppercase on the even code point in 0100..0137 and
  // 014A..0177, on the odd one in 0139..0148 and 0179..017E; Ÿ (0178) pairs with ÿ (00FF).
  if (c >= 0x100 && c <= 0x137) return c == 0x130 ? c : c | 1;
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
  if (c >= 0x14A && c <= 0x177) return c | 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
  // Cyrillic: Ѐ..Џ -> ѐ..џ, А..Я -> а..я.
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  return c;
}

std::string to_lower_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const unsigned char byte = static_cast<unsigned char>(text[pos]);
    if (byte < 0x80) {  // the common case, without decoding
      out += static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + 32 : byte);
      ++pos;
      continue;
    }
    const int length = utf8_sequence_length(text, pos);
    if (length == 0) {  // not UTF-8: the byte passes through
      out += text[pos++];
      continue;
    }
    const char32_t c = decode_utf8(text, pos, length);
    if (c == 0x130) {
      out += "i\xCC\x87";  // Python: 'İ'.lower() == 'i' + U+0307 COMBINING DOT ABOVE
    } else {
      append_utf8(out, to_lower(c));
    }
    pos += static_cast<size_t>(length);
  }
  return out;
}

std::string preprocess_d2l(std::string_view text, bool lowercase) {
  // 1. no-break spaces -> ' '. U+00A0 is C2 A0, U+202F is E2 80 AF; neither byte string can
  // start inside another character, so a byte search is exact.
  std::string spaced;
  spaced.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 2, "\xC2\xA0") == 0) {
      spaced += ' ';
      i += 2;
    } else if (text.compare(i, 3, "\xE2\x80\xAF") == 0) {
      spaced += ' ';
      i += 3;
    } else {
      spaced += text[i++];
    }
  }
  // 2. lowercase.
  const std::string lower = lowercase ? to_lower_utf8(spaced) : spaced;
  // 3. ' ' before , . ! ? not at the start and not after ' '. All four and ' ' are ASCII, so the
  // previous byte is the previous character whenever the comparison matters.
  std::string out;
  out.reserve(lower.size() + lower.size() / 4);
  for (size_t i = 0; i < lower.size(); ++i) {
    const char c = lower[i];
    const bool punct = c == ',' || c == '.' || c == '!' || c == '?';
    if (punct && i > 0 && lower[i - 1] != ' ') out += ' ';
    out += c;
  }
  return out;
}

std::vector<std::string> tokenize_words(std::string_view preprocessed) {
  std::vector<std::string> tokens;
  size_t start = 0;
  while (start <= preprocessed.size()) {
    size_t end = preprocessed.find(' ', start);
    if (end == std::string_view::npos) end = preprocessed.size();
    if (end > start) tokens.emplace_back(preprocessed.substr(start, end - start));
    start = end + 1;
  }
  return tokens;
}

std::vector<std::string> tokenize_d2l(std::string_view text, bool lowercase) {
  return tokenize_words(preprocess_d2l(text, lowercase));
}

std::string detokenize(const std::vector<std::string>& tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ' ';
    out += tokens[i];
  }
  return out;
}

namespace {

constexpr std::string_view kMarks = ",.!?";  // the marks d2l's step 3 spaces
constexpr std::string_view kNarrowNoBreakSpace = "\xE2\x80\xAF", kNoBreakSpace = "\xC2\xA0";

bool is_mark(char c) { return kMarks.find(c) != std::string_view::npos; }

}  // namespace

bool is_punctuation_separator(std::string_view separator) {
  return separator.empty() || separator == " " || separator == kNarrowNoBreakSpace ||
         separator == kNoBreakSpace;
}

PunctuationSpacing learn_punctuation_spacing(const std::vector<std::string>& texts) {
  // counts[mark][k] for the separators in this order (the tie-break order).
  const std::string_view separators[] = {"", " ", kNarrowNoBreakSpace, kNoBreakSpace};
  std::map<char, std::array<int64_t, 4>> counts;
  for (const std::string& text : texts) {
    // The marks and ' ' are ASCII and the no-break spaces are whole byte strings that cannot end
    // inside another character, so comparing the bytes before a mark is exact.
    for (size_t i = 1; i < text.size(); ++i) {
      if (!is_mark(text[i]) || is_mark(text[i - 1])) continue;
      const std::string_view before(text.data(), i);
      size_t k = 0;
      if (before.back() == ' ') {
        k = 1;
      } else if (before.size() >= 3 && before.substr(before.size() - 3) == kNarrowNoBreakSpace) {
        k = 2;
      } else if (before.size() >= 2 && before.substr(before.size() - 2) == kNoBreakSpace) {
        k = 3;
      }
      ++counts[text[i]][k];
    }
  }
  PunctuationSpacing spacing;
  for (const auto& [mark, count] : counts) {
    const size_t best = static_cast<size_t>(std::max_element(count.begin(), count.end()) -
                                            count.begin());  // the first of equal counts
    spacing[std::string(1, mark)] = std::string(separators[best]);
  }
  return spacing;
}

std::string detokenize_d2l(const std::vector<std::string>& tokens,
                           const PunctuationSpacing& spacing) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& token = tokens[i];
    if (i > 0) {
      if (token.empty() || !is_mark(token[0])) {
        out += ' ';
      } else if (out.empty() || !is_mark(out.back())) {  // after a mark, none: "? !" -> "?!"
        auto it = spacing.find(token.substr(0, 1));
        out += it == spacing.end() ? " " : it->second;
      }
    }
    out += token;
  }
  return out;
}

TokenizedPairs tokenize_pairs(const std::vector<SentencePair>& pairs) {
  TokenizedPairs out;
  out.source.reserve(pairs.size());
  out.target.reserve(pairs.size());
  for (const SentencePair& pair : pairs) {
    out.source.push_back(tokenize_d2l(pair.source));
    out.target.push_back(tokenize_d2l(pair.target));
  }
  return out;
}

}  // namespace kiln::data
