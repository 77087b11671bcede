// Reading TSV and line-aligned parallel corpora (see corpus.h), and the train / valid / test split.
#include "models/data/corpus.h"

#include <cstdio>
#include <string_view>

#include "core/error.h"
#include "models/data/text_file.h"

namespace kiln::data {

namespace {

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_ascii_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ascii_space(text.back())) text.remove_suffix(1);
  return text;
}

// "" when valid, else "invalid UTF-8 at byte N of the line (0xHH)", N counted from 1.
std::string utf8_problem(std::string_view line) {
  const int64_t at = first_invalid_utf8(line);
  if (at < 0) return "";
  char byte[8];
  std::snprintf(byte, sizeof(byte), "0x%02X", static_cast<unsigned char>(line[at]));
  return detail::concat("invalid UTF-8 at byte ", at + 1, " of the line (", byte, ")");
}

// Records one bad line: throws when bad lines are not skipped, else counts it and keeps the
// message while fewer than Corpus::max_problems_kept are kept.
template <typename Lines>  // Corpus or InputLines
void report(Lines& lines, const ReadOptions& options, const std::string& path, size_t line,
            const std::string& reason) {
  std::string problem = detail::concat(path, ":", line, ": ", reason);
  if (!options.skip_bad_lines) throw Error(problem);
  ++lines.skipped;
  if (lines.problems.size() < Corpus::max_problems_kept) lines.problems.push_back(problem);
}

void check_options(const char* op, const ReadOptions& options) {
  KILN_CHECK(options.max_pairs >= -1, op, ": max_pairs must be -1 (no limit) or >= 0, got ",
             options.max_pairs);
}

bool full(const Corpus& corpus, const ReadOptions& options) {
  return options.max_pairs >= 0 && static_cast<int64_t>(corpus.pairs.size()) >= options.max_pairs;
}

}  // namespace

Corpus read_tsv(const std::string& path, const ReadOptions& options) {
  check_options("read_tsv", options);
  return parse_tsv(read_text_file("read_tsv", path), path, options);
}

Corpus parse_tsv(std::string_view text, const std::string& path, const ReadOptions& options) {
  check_options("read_tsv", options);
  Corpus corpus;
  const std::vector<std::string_view> lines = split_lines(text);
  for (size_t i = 0; i < lines.size() && !full(corpus, options); ++i) {
    const std::string_view line = lines[i];
    const size_t number = i + 1;
    if (trim(line).empty()) continue;
    if (std::string bad = utf8_problem(line); !bad.empty()) {
      report(corpus, options, path, number, bad);
      continue;
    }
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) {
      report(corpus, options, path, number, "no tab between source and target");
      continue;
    }
    const size_t tab2 = line.find('\t', tab + 1);  // columns after the second are ignored
    const std::string_view source = trim(line.substr(0, tab));
    const std::string_view target =
        trim(line.substr(tab + 1, tab2 == std::string_view::npos ? line.npos : tab2 - tab - 1));
    if (source.empty() || target.empty()) {
      report(corpus, options, path, number,
             source.empty() ? "empty source side" : "empty target side");
      continue;
    }
    corpus.pairs.push_back({std::string(source), std::string(target)});
  }
  return corpus;
}

Corpus read_parallel(const std::string& source_path, const std::string& target_path,
                     const ReadOptions& options) {
  check_options("read_parallel", options);
  const std::string source_text = read_text_file("read_parallel", source_path);
  const std::string target_text = read_text_file("read_parallel", target_path);
  return parse_parallel(source_text, target_text, source_path, target_path, options);
}

Corpus parse_parallel(std::string_view source_text, std::string_view target_text,
                      const std::string& source_path, const std::string& target_path,
                      const ReadOptions& options) {
  check_options("read_parallel", options);
  const std::vector<std::string_view> sources = split_lines(source_text);
  const std::vector<std::string_view> targets = split_lines(target_text);
  KILN_CHECK(sources.size() == targets.size(), "read_parallel: '", source_path, "' has ",
             sources.size(), " lines but '", target_path, "' has ", targets.size(),
             "; the files must be line-aligned");
  Corpus corpus;
  for (size_t i = 0; i < sources.size() && !full(corpus, options); ++i) {
    const size_t number = i + 1;
    const std::string_view source = trim(sources[i]), target = trim(targets[i]);
    if (source.empty() && target.empty()) continue;
    if (std::string bad = utf8_problem(sources[i]); !bad.empty()) {
      report(corpus, options, source_path, number, bad);
    } else if (std::string bad_target = utf8_problem(targets[i]); !bad_target.empty()) {
      report(corpus, options, target_path, number, bad_target);
    } else if (source.empty()) {
      report(corpus, options, source_path, number,
             "empty source sentence (its target is not empty)");
    } else if (target.empty()) {
      report(corpus, options, target_path, number,
             "empty target sentence (its source is not empty)");
    } else {
      corpus.pairs.push_back({std::string(source), std::string(target)});
    }
  }
  return corpus;
}

namespace {
// One line already split off (no '\n', no BOM): the strict UTF-8 check and the trim.
void clean_input_line(InputLines& input, std::string_view line, const std::string& name,
                      size_t number, const ReadOptions& options) {
  if (std::string bad = utf8_problem(line); !bad.empty()) {
    report(input, options, name, number, bad);
    input.sentences.emplace_back();
    return;
  }
  input.sentences.emplace_back(trim(line));
}
}  // namespace

InputLines parse_input_lines(std::string_view text, const std::string& name,
                             const ReadOptions& options) {
  InputLines input;
  const std::vector<std::string_view> lines = split_lines(text);
  input.sentences.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) clean_input_line(input, lines[i], name, i + 1, options);
  return input;
}

void add_input_line(InputLines& input, std::string_view line, const std::string& name,
                    size_t number, const ReadOptions& options) {
  // What split_lines drops from a whole text, for a line on its own.
  if (number == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  clean_input_line(input, line, name, number, options);
}

Split split_pairs(const std::vector<SentencePair>& pairs, int64_t train, int64_t valid,
                  int64_t test) {
  KILN_CHECK(train >= 0 && valid >= 0 && test >= -1, "split_pairs: sizes must be train >= 0, ",
             "valid >= 0 and test >= 0 or -1 (the rest); got train ", train, ", valid ", valid,
             ", test ", test);
  const int64_t available = static_cast<int64_t>(pairs.size());
  const int64_t asked = train + valid + (test < 0 ? 0 : test);
  if (asked > available) {
    if (test < 0) {
      KILN_FAIL("split_pairs: asked for ", train, " train + ", valid, " valid = ", asked,
                " pairs (and the rest as test), but there are only ", available);
    }
    KILN_FAIL("split_pairs: asked for ", train, " train + ", valid, " valid + ", test,
              " test = ", asked, " pairs, but there are only ", available);
  }
  const int64_t test_count = test < 0 ? available - train - valid : test;
  const auto slice = [&](int64_t begin, int64_t count) {
    return std::vector<SentencePair>(pairs.begin() + begin, pairs.begin() + begin + count);
  };
  return {slice(0, train), slice(train, valid), slice(train + valid, test_count)};
}

}  // namespace kiln::data
