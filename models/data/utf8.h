// UTF-8 for the text pipeline: strict validation (Unicode 15, table 3-7: no overlong forms, no
// surrogates U+D800..U+DFFF, nothing above U+10FFFF), and decoding / encoding one code point.
// Everything works on bytes in std::string / std::string_view; no locale is consulted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::data {

// True when `text` is well-formed UTF-8 (strict, see above). The empty string is valid.
bool valid_utf8(std::string_view text);

// Byte offset of the first ill-formed sequence in `text`, or -1 when it is valid UTF-8.
int64_t first_invalid_utf8(std::string_view text);

// Length in bytes (1-4) of the well-formed sequence starting at text[pos], or 0 when the bytes
// there are not one. pos must be < text.size().
int utf8_sequence_length(std::string_view text, size_t pos);

// The code point of the well-formed sequence of `length` bytes at text[pos] (length as returned
// by utf8_sequence_length, which must be > 0).
char32_t decode_utf8(std::string_view text, size_t pos, int length);

// Appends the UTF-8 encoding of `code_point` (<= U+10FFFF, not a surrogate) to `out`.
void append_utf8(std::string& out, char32_t code_point);

}  // namespace kiln::data
