// The lexical table of the vocabulary shortlist (see shortlist.h).
#include "models/seq2seq/shortlist.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "core/durable_file.h"
#include "core/error.h"
#include "models/data/text_file.h"
#include "models/data/vocab.h"

namespace kiln::seq2seq {

namespace {

using data::Vocab;

bool aligned_token(int64_t id) {
  return id != Vocab::pad_id && id != Vocab::bos_id && id != Vocab::eos_id;
}

// The ids of one side that take part in the alignment.
std::vector<int64_t> aligned_tokens(const std::vector<int64_t>& ids, int64_t vocab,
                                    const char* side, size_t pair) {
  std::vector<int64_t> kept;
  for (int64_t id : ids) {
    KILN_CHECK(id >= 0 && id < vocab, "LexicalTable::learn: pair ", pair + 1, " has ", side, " id ",
               id, " outside the vocabulary of ", vocab);
    if (aligned_token(id)) kept.push_back(id);
  }
  return kept;
}

// A non-negative integer filling all of `text`, or -1.
int64_t parse_id(std::string_view text) {
  int64_t value = -1;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && value >= 0 ? value : -1;
}

std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t begin = 0;
  while (begin < line.size()) {
    size_t end = line.find(' ', begin);
    if (end == std::string_view::npos) end = line.size();
    if (end > begin) fields.push_back(line.substr(begin, end - begin));
    begin = end + 1;
  }
  return fields;
}

}  // namespace

LexicalTable LexicalTable::learn(const std::vector<data::EncodedPair>& pairs, int64_t source_vocab,
                                 int64_t target_vocab, const LexicalOptions& options) {
  KILN_CHECK(options.iterations >= 1 && options.top >= 1 && options.min_prob >= 0,
             "LexicalTable::learn: need iterations >= 1, top >= 1 and min_prob >= 0");
  // Source row `null_row` is IBM Model 1's NULL word: the target tokens no source word explains
  // (articles, punctuation) go there instead of inflating every source word's p(t | s).
  const int64_t null_row = source_vocab;
  std::vector<std::vector<int64_t>> sources, targets;
  int64_t links_read = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    std::vector<int64_t> source = aligned_tokens(pairs[i].source, source_vocab, "source", i);
    std::vector<int64_t> target = aligned_tokens(pairs[i].target, target_vocab, "target", i);
    source.push_back(null_row);
    links_read += static_cast<int64_t>(source.size() * target.size());
    if (links_read > options.max_links) break;  // the memory bound (LexicalOptions)
    sources.push_back(std::move(source));
    targets.push_back(std::move(target));
  }
  // The (s, t) pairs that co-occur in some sentence pair, as rows of a sparse matrix (CSR): only
  // they can have p(t | s) > 0.
  std::vector<uint64_t> keys;
  for (size_t i = 0; i < sources.size(); ++i) {
    for (int64_t s : sources[i]) {
      for (int64_t t : targets[i]) keys.push_back(static_cast<uint64_t>(s) << 32 | t);
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<size_t> row_begin(source_vocab + 2, 0);
  for (uint64_t key : keys) ++row_begin[(key >> 32) + 1];
  for (int64_t s = 0; s <= source_vocab; ++s) row_begin[s + 1] += row_begin[s];
  // Every (target token, source token) link of every pair, as its entry in `keys`, in the order
  // the EM loop visits them: per pair, per target token, per source token (NULL last).
  std::vector<uint32_t> links;
  for (size_t i = 0; i < sources.size(); ++i) {
    for (int64_t t : targets[i]) {
      for (int64_t s : sources[i]) {
        const uint64_t key = static_cast<uint64_t>(s) << 32 | t;
        links.push_back(static_cast<uint32_t>(
            std::lower_bound(keys.begin() + row_begin[s], keys.begin() + row_begin[s + 1], key) -
            keys.begin()));
      }
    }
  }
  // EM: a uniform start, then p(t | s) = expected count(s -> t) / expected count(s).
  std::vector<double> prob(keys.size(), 1.0), count(keys.size());
  for (int64_t iteration = 0; iteration < options.iterations; ++iteration) {
    std::fill(count.begin(), count.end(), 0.0);
    size_t link = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
      const size_t width = sources[i].size();
      for (size_t j = 0; j < targets[i].size(); ++j, link += width) {
        double total = 0;
        for (size_t k = 0; k < width; ++k) total += prob[links[link + k]];
        for (size_t k = 0; k < width; ++k) count[links[link + k]] += prob[links[link + k]] / total;
      }
    }
    for (int64_t s = 0; s <= source_vocab; ++s) {
      double total = 0;
      for (size_t e = row_begin[s]; e < row_begin[s + 1]; ++e) total += count[e];
      for (size_t e = row_begin[s]; e < row_begin[s + 1]; ++e) prob[e] = count[e] / total;
    }
  }
  LexicalTable table;
  table.source_vocab = source_vocab;
  table.target_vocab = target_vocab;
  table.targets.resize(source_vocab);
  for (int64_t s = 0; s < source_vocab; ++s) {
    std::vector<std::pair<double, int64_t>> ranked;  // (p(t | s), t)
    for (size_t e = row_begin[s]; e < row_begin[s + 1]; ++e) {
      if (prob[e] >= options.min_prob) ranked.push_back({prob[e], keys[e] & 0xffffffffu});
    }
    // Likeliest first, ties to the lower (more frequent) id, so the table is deterministic.
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    if (static_cast<int64_t>(ranked.size()) > options.top) ranked.resize(options.top);
    for (const auto& entry : ranked) table.targets[s].push_back(entry.second);
  }
  return table;
}

std::vector<int64_t> LexicalTable::candidates(const std::vector<std::vector<int64_t>>& sources,
                                              int64_t k) const {
  std::vector<char> in(target_vocab, 0);
  const int64_t frequent = std::min(target_vocab, Vocab::num_reserved + k);
  std::fill(in.begin(), in.begin() + frequent, 1);
  for (const auto& sentence : sources) {
    for (int64_t s : sentence) {
      if (s < 0 || s >= source_vocab) continue;
      for (int64_t t : targets[s]) in[t] = 1;
    }
  }
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < target_vocab; ++t) {
    if (in[t]) ids.push_back(t);
  }
  return ids;
}

std::string LexicalTable::to_text() const {
  std::string text = "kiln-lexical-shortlist 1 " + std::to_string(source_vocab) + " " +
                     std::to_string(target_vocab) + "\n";
  for (const auto& row : targets) {
    for (size_t j = 0; j < row.size(); ++j) {
      if (j > 0) text += ' ';
      text += std::to_string(row[j]);
    }
    text += '\n';
  }
  return text;
}

LexicalTable LexicalTable::parse(std::string_view text, const std::string& path) {
  const std::vector<std::string_view> lines = data::split_lines(text);
  KILN_CHECK(!lines.empty(), "LexicalTable::load: ", path, ": empty file");
  const std::vector<std::string_view> header = fields_of(lines[0]);
  LexicalTable table;
  KILN_CHECK(header.size() == 4 && header[0] == "kiln-lexical-shortlist" && header[1] == "1" &&
                 (table.source_vocab = parse_id(header[2])) > 0 &&
                 (table.target_vocab = parse_id(header[3])) > 0,
             "LexicalTable::load: ", path, ":1: expected the header 'kiln-lexical-shortlist 1 ",
             "<source vocab> <target vocab>', found '", lines[0], "'");
  KILN_CHECK(static_cast<int64_t>(lines.size()) - 1 == table.source_vocab,
             "LexicalTable::load: ", path, ": has ", lines.size() - 1,
             " source lines, the header says ", table.source_vocab);
  table.targets.resize(table.source_vocab);
  for (size_t i = 1; i < lines.size(); ++i) {
    for (std::string_view field : fields_of(lines[i])) {
      const int64_t id = parse_id(field);
      KILN_CHECK(id >= 0 && id < table.target_vocab, "LexicalTable::load: ", path, ":", i + 1,
                 ": '", field, "' is not a target id in [0, ", table.target_vocab, ")");
      table.targets[i - 1].push_back(id);
    }
  }
  return table;
}

void LexicalTable::save(const std::string& dir) const {
  durable_write(dir + "/" + file_name, to_text(), "LexicalTable::save");
}

LexicalTable LexicalTable::load_if_present(const std::string& dir) {
  const std::string path = dir + "/" + file_name;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  return parse(data::read_text_file("LexicalTable::load", path), path);
}

}  // namespace kiln::seq2seq
