// Reading a parallel corpus into sentence pairs, and splitting it into train / valid / test.
//
// Two formats: the Tatoeba / Anki TSV (`source<TAB>target[<TAB>more...]`, one pair a line: d2l's
// fra-eng `fra.txt`, English first) and two line-aligned plain-text files. Both accept CRLF line
// endings and a UTF-8 byte order mark. A bad line (invalid UTF-8, no tab, an empty side) is a
// "path:line: reason" problem: skipped and counted by default, or thrown as kiln::Error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/data/utf8.h"  // valid_utf8

namespace kiln::data {

struct SentencePair {
  std::string source, target;
};

struct ReadOptions {
  bool skip_bad_lines = true;  // false: the first bad line throws kiln::Error("path:line: reason")
  int64_t max_pairs = -1;      // >= 0: stop after this many good pairs; -1: read everything
};

struct Corpus {
  static constexpr size_t max_problems_kept = 20;

  std::vector<SentencePair> pairs;    // in file order, each side trimmed of ASCII whitespace
  int64_t skipped = 0;                // bad lines skipped (all of them, not only those kept below)
  std::vector<std::string> problems;  // "path:line: reason" for the first max_problems_kept
};

// Tatoeba / Anki TSV: the first column is the source, the second the target, further columns are
// ignored. Blank lines (empty or only spaces / tabs) are skipped silently and are not problems.
// A file that cannot be opened throws "read_tsv: cannot open 'path': <strerror>".
Corpus read_tsv(const std::string& path, const ReadOptions& options = {});
// The same on a file's bytes already in memory; `path` only names it in problems (fuzz/).
Corpus parse_tsv(std::string_view text, const std::string& path, const ReadOptions& options = {});

// Line i of source_path pairs with line i of target_path. Different line counts throw, naming
// both files and both counts. A line pair where both sides are blank is skipped silently; one
// blank side or invalid UTF-8 is a problem reported against the file:line that has it.
Corpus read_parallel(const std::string& source_path, const std::string& target_path,
                     const ReadOptions& options = {});
Corpus parse_parallel(std::string_view source_text, std::string_view target_text,
                      const std::string& source_path, const std::string& target_path,
                      const ReadOptions& options = {});

// Sentences to translate, one a line (kiln translate's stdin), cleaned exactly as a corpus side:
// the same split_lines (CRLF, a leading BOM), the same strict UTF-8 check and the same ASCII
// whitespace trim. There is one sentence per input line, so outputs stay aligned with inputs: a
// blank line is "" (translated to an empty line), and a line with invalid UTF-8 is a
// "name:line: reason" problem that is skipped as "" (ReadOptions::skip_bad_lines, the default) or
// thrown as kiln::Error. max_pairs is ignored.
struct InputLines {
  std::vector<std::string> sentences;  // one per line of the input, in order
  int64_t skipped = 0;                 // lines with invalid UTF-8, output as ""
  std::vector<std::string> problems;   // "name:line: reason" for the first max_problems_kept
};
InputLines parse_input_lines(std::string_view text, const std::string& name,
                             const ReadOptions& options = {});
// The same for one line as it arrives (kiln translate's streaming stdin): `line` without its
// '\n', `number` counted from 1; a trailing '\r' and, on line 1, a BOM are dropped, then the line
// is checked and trimmed and appended to `input` ("" and a problem when its UTF-8 is invalid).
void add_input_line(InputLines& input, std::string_view line, const std::string& name,
                    size_t number, const ReadOptions& options = {});

struct Split {
  std::vector<SentencePair> train, valid, test;
};

// Consecutive slices in file order: pairs [0, train), [train, train + valid), then the next
// `test` pairs (-1: all the rest). As d2l takes the first 512 pairs for training and the next 128
// for validation. Asking for more pairs than there are throws with both numbers.
Split split_pairs(const std::vector<SentencePair>& pairs, int64_t train, int64_t valid,
                  int64_t test = -1);

}  // namespace kiln::data
