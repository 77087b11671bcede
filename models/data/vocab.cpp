// Vocab: building by frequency, lookups, encode / decode, and the one-token-a-line file format.
#include "models/data/vocab.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "core/durable_file.h"
#include "core/error.h"
#include "models/data/text_file.h"
#include "models/data/utf8.h"

namespace kiln::data {

namespace {

// "" when `token` can be stored in a vocabulary file, else why not.
std::string token_problem(const std::string& token) {
  if (token.empty()) return "is empty";
  if (token.find_first_of("\r\n") != std::string::npos) return "contains a line break";
  if (!valid_utf8(token)) return "is not valid UTF-8";
  return "";
}

}  // namespace

const std::vector<std::string>& Vocab::reserved_tokens() {
  static const std::vector<std::string> reserved = {"<pad>", "<unk>", "<bos>", "<eos>"};
  return reserved;
}

Vocab::Vocab() : tokens_(reserved_tokens()) {
  for (int64_t i = 0; i < num_reserved; ++i) ids_.emplace(tokens_[static_cast<size_t>(i)], i);
}

Vocab Vocab::from_tokens(std::vector<std::string> tokens) {
  const std::vector<std::string>& reserved = reserved_tokens();
  KILN_CHECK(tokens.size() >= reserved.size(), "Vocab::from_tokens: got ", tokens.size(),
             " tokens, expected at least the 4 reserved ones <pad> <unk> <bos> <eos>");
  Vocab vocab;
  vocab.tokens_.clear();
  vocab.ids_.clear();
  vocab.ids_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i < reserved.size()) {
      KILN_CHECK(tokens[i] == reserved[i], "Vocab::from_tokens: token ", i, " is '", tokens[i],
                 "', expected the reserved '", reserved[i], "'");
    }
    const std::string problem = token_problem(tokens[i]);
    KILN_CHECK(problem.empty(), "Vocab::from_tokens: token ", i, " '", tokens[i], "' ", problem);
    const auto [it, inserted] = vocab.ids_.emplace(tokens[i], static_cast<int64_t>(i));
    KILN_CHECK(inserted, "Vocab::from_tokens: token ", i, " '", tokens[i], "' duplicates token ",
               it->second);
  }
  vocab.tokens_ = std::move(tokens);
  return vocab;
}

Vocab Vocab::build(const std::vector<std::vector<std::string>>& sequences, int64_t min_freq,
                   int64_t max_size) {
  KILN_CHECK(min_freq >= 1, "Vocab::build: min_freq must be >= 1, got ", min_freq);
  KILN_CHECK(max_size == -1 || max_size >= num_reserved, "Vocab::build: max_size must be -1 (no ",
             "cap) or >= 4 (the reserved tokens count), got ", max_size);
  Vocab reserved_only;
  std::unordered_map<std::string, int64_t> counts;
  for (size_t s = 0; s < sequences.size(); ++s) {
    for (size_t t = 0; t < sequences[s].size(); ++t) {
      const std::string& token = sequences[s][t];
      if (reserved_only.contains(token)) continue;
      auto it = counts.find(token);
      if (it == counts.end()) {
        const std::string problem = token_problem(token);
        KILN_CHECK(problem.empty(), "Vocab::build: sequence ", s, " token ", t, " '", token, "' ",
                   problem);
        counts.emplace(token, 1);
      } else {
        ++it->second;
      }
    }
  }
  std::vector<std::pair<std::string, int64_t>> kept;
  for (const auto& entry : counts) {
    if (entry.second >= min_freq) kept.push_back(entry);
  }
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::vector<std::string> tokens = reserved_tokens();
  for (const auto& entry : kept) {
    if (max_size >= 0 && static_cast<int64_t>(tokens.size()) >= max_size) break;
    tokens.push_back(entry.first);
  }
  return from_tokens(std::move(tokens));
}

int64_t Vocab::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id : it->second;
}

const std::string& Vocab::token(int64_t id) const {
  KILN_CHECK(id >= 0 && id < size(), "Vocab::token: id ", id,
             " is out of range for a vocabulary of ", size(), " tokens (expected 0 <= id < ",
             size(), ")");
  return tokens_[static_cast<size_t>(id)];
}

std::vector<int64_t> Vocab::encode(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const std::string& token : tokens) ids.push_back(id(token));
  return ids;
}

std::vector<std::string> Vocab::decode(const std::vector<int64_t>& ids, bool strip_special) const {
  std::vector<std::string> tokens;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    KILN_CHECK(id >= 0 && id < size(), "Vocab::decode: id ", id, " at position ", i,
               " is out of range for a vocabulary of ", size(), " tokens");
    if (strip_special) {
      if (id == eos_id) break;
      if (id == pad_id || id == bos_id) continue;
    }
    tokens.push_back(tokens_[static_cast<size_t>(id)]);
  }
  return tokens;
}

void Vocab::save(const std::string& path) const {
  std::string text;
  for (const std::string& token : tokens_) text += token + "\n";
  durable_write(path, text, "Vocab::save");
}

Vocab Vocab::load(const std::string& path) {
  return parse(read_text_file("Vocab::load", path), path);
}

Vocab Vocab::parse(std::string_view text, const std::string& path) {
  const std::vector<std::string>& reserved = reserved_tokens();
  std::vector<std::string> tokens;
  std::unordered_map<std::string_view, size_t> first_line;
  const std::vector<std::string_view> lines = split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view token = lines[i];
    const size_t line = i + 1;
    KILN_CHECK(!token.empty(), "Vocab::load: ", path, ":", line, ": empty line");
    const int64_t bad = first_invalid_utf8(token);
    KILN_CHECK(bad < 0, "Vocab::load: ", path, ":", line, ": invalid UTF-8 at byte ", bad + 1);
    if (i < reserved.size()) {
      KILN_CHECK(token == reserved[i], "Vocab::load: ", path, ":", line, ": expected the reserved ",
                 "token '", reserved[i], "' (id ", i, "), found '", token, "'");
    }
    const auto [it, inserted] = first_line.emplace(token, line);
    KILN_CHECK(inserted, "Vocab::load: ", path, ":", line, ": duplicate token '", token,
               "' (first at line ", it->second, ")");
    tokens.emplace_back(token);
  }
  KILN_CHECK(tokens.size() >= reserved.size(), "Vocab::load: ", path, ": has ", tokens.size(),
             " tokens, expected at least the 4 reserved ones <pad> <unk> <bos> <eos>");
  return from_tokens(std::move(tokens));
}

}  // namespace kiln::data
