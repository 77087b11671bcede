// Strict UTF-8 validation and single code point decode / encode (see utf8.h).
#include "models/data/utf8.h"

#include <cstdio>

#include "core/error.h"

namespace kiln::data {

namespace {
bool continuation(unsigned char byte, unsigned char low = 0x80, unsigned char high = 0xBF) {
  return byte >= low && byte <= high;
}
}  // namespace

// Table 3-7 of the Unicode standard: the first byte fixes the length and the allowed range of
// the second byte (which is what excludes overlongs, surrogates and code points > U+10FFFF).
int utf8_sequence_length(std::string_view text, size_t pos) {
  const size_t left = text.size() - pos;
  const auto at = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char b0 = at(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return left >= 2 && continuation(at(1)) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left < 3) return 0;
    const unsigned char low = b0 == 0xE0 ? 0xA0 : 0x80;   // E0 80..9F would be overlong
    const unsigned char high = b0 == 0xED ? 0x9F : 0xBF;  // ED A0..BF would be a surrogate
    return continuation(at(1), low, high) && continuation(at(2)) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left < 4) return 0;
    const unsigned char low = b0 == 0xF0 ? 0x90 : 0x80;   // F0 80..8F would be overlong
    const unsigned char high = b0 == 0xF4 ? 0x8F : 0xBF;  // F4 90.. would be > U+10FFFF
    return continuation(at(1), low, high) && continuation(at(2)) && continuation(at(3)) ? 4 : 0;
  }
  return 0;  // 80..BF (a lone continuation byte), C0, C1 (overlong), F5..FF
}

int64_t first_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const int length = utf8_sequence_length(text, pos);
    if (length == 0) return static_cast<int64_t>(pos);
    pos += static_cast<size_t>(length);
  }
  return -1;
}

bool valid_utf8(std::string_view text) { return first_invalid_utf8(text) < 0; }

char32_t decode_utf8(std::string_view text, size_t pos, int length) {
  const auto at = [&](int i) {
    return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i]));
  };
  switch (length) {
    case 1: return at(0);
    case 2: return ((at(0) & 0x1F) << 6) | (at(1) & 0x3F);
    case 3: return ((at(0) & 0x0F) << 12) | ((at(1) & 0x3F) << 6) | (at(2) & 0x3F);
    case 4:
      return ((at(0) & 0x07) << 18) | ((at(1) & 0x3F) << 12) | ((at(2) & 0x3F) << 6) |
             (at(3) & 0x3F);
    default: KILN_FAIL("decode_utf8: length ", length, " is not 1..4");
  }
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    char name[16];
    std::snprintf(name, sizeof(name), "U+%04X", static_cast<unsigned>(cp));
    KILN_FAIL("append_utf8: ", name, " is not a Unicode scalar value (a surrogate or > U+10FFFF)");
  }
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace kiln::data
