// Whole-file reads and line splitting shared by the corpus and vocabulary readers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::data {

// The file's bytes. Errors name `op`, the path and the system's reason (strerror).
std::string read_text_file(const char* op, const std::string& path);

// Lines without their terminator: '\n' ends a line and one '\r' before it is dropped (CRLF); a
// leading UTF-8 byte order mark is dropped; text after the last '\n' is a line when non-empty.
// The views point into `text`.
std::vector<std::string_view> split_lines(std::string_view text);

}  // namespace kiln::data
