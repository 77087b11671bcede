// libFuzzer target: the corpus line readers, data::parse_tsv and data::parse_parallel (the code
// paths behind read_tsv and read_parallel): line splitting (CRLF, BOM), the strict UTF-8 check,
// tabs, blank and empty sides. The first byte picks the format and the options; for aligned
// files the rest is split at its first NUL byte into the source and target files. A bad line
// must be a kiln::Error (strict) or a counted problem; every kept side is non-empty, trimmed,
// valid UTF-8.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "models/data/corpus.h"

namespace {
void check_pairs(const kiln::data::Corpus& corpus, const kiln::data::ReadOptions& options) {
  if (options.max_pairs >= 0 && static_cast<int64_t>(corpus.pairs.size()) > options.max_pairs)
    __builtin_trap();
  if (corpus.problems.size() > kiln::data::Corpus::max_problems_kept) __builtin_trap();
  for (const kiln::data::SentencePair& pair : corpus.pairs) {
    for (const std::string& side : {pair.source, pair.target}) {
      if (side.empty() || std::isspace(static_cast<unsigned char>(side.front())) ||
          std::isspace(static_cast<unsigned char>(side.back())))
        __builtin_trap();
      if (!kiln::data::valid_utf8(side)) __builtin_trap();
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  kiln::data::ReadOptions options;
  options.skip_bad_lines = (mode & 2) == 0;
  options.max_pairs = (mode & 4) ? (mode >> 3) : -1;
  try {
    if ((mode & 1) == 0) {
      check_pairs(kiln::data::parse_tsv(text, "fuzz.tsv", options), options);
    } else {
      const size_t nul = text.find('\0');
      std::string_view source = text.substr(0, nul);
      std::string_view target = nul == text.npos ? std::string_view() : text.substr(nul + 1);
      check_pairs(kiln::data::parse_parallel(source, target, "fuzz.src", "fuzz.tgt", options),
                  options);
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
