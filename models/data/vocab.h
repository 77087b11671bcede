// Vocab: token <-> id. The four reserved tokens come first with fixed ids
//   <pad> = 0, <unk> = 1, <bos> = 2, <eos> = 3,
// then the corpus tokens, most frequent first, ties broken by the token's bytes ascending, so the
// same sequences always give the same ids. Saved as one token per line (UTF-8, '\n' endings).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::data {

class Vocab {
 public:
  static constexpr int64_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  static constexpr int64_t num_reserved = 4;
  static const std::vector<std::string>& reserved_tokens();  // {"<pad>", "<unk>", "<bos>", "<eos>"}

  // Only the four reserved tokens.
  Vocab();

  // Counts every token of every sequence (reserved tokens are not counted: they are always in),
  // keeps those seen at least min_freq times, and orders them as above. max_size caps the total
  // size, reserved tokens included (-1: no cap; otherwise >= 4). Tokens must be non-empty valid
  // UTF-8 without '\n' or '\r' (so that save/load round-trips).
  static Vocab build(const std::vector<std::vector<std::string>>& sequences, int64_t min_freq = 1,
                     int64_t max_size = -1);

  // Exactly these tokens with these ids; the first four must be the reserved ones, no duplicates.
  static Vocab from_tokens(std::vector<std::string> tokens);

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }
  // unk_id for a token not in the vocabulary.
  int64_t id(const std::string& token) const;
  // Throws for an id outside [0, size()).
  const std::string& token(int64_t id) const;
  const std::vector<std::string>& tokens() const { return tokens_; }

  std::vector<int64_t> encode(const std::vector<std::string>& tokens) const;
  // strip_special: stops at the first <eos> and drops <pad> and <bos> (<unk> stays). Otherwise
  // every id becomes its token. Ids outside [0, size()) throw, naming the position.
  std::vector<std::string> decode(const std::vector<int64_t>& ids, bool strip_special = true) const;

  // Written durably (core/durable_file.h): a reader never sees half a file, a crash neither.
  void save(const std::string& path) const;
  // Reads a file written by save (a UTF-8 BOM and CRLF endings are tolerated). Errors name
  // path:line: the reserved tokens not first and in order, a duplicate, an empty line, bad UTF-8.
  static Vocab load(const std::string& path);
  // The same on a file's bytes already in memory; `path` only names it in errors (fuzz/).
  static Vocab parse(std::string_view text, const std::string& path);

  bool operator==(const Vocab& other) const { return tokens_ == other.tokens_; }
  bool operator!=(const Vocab& other) const { return !(*this == other); }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

}  // namespace kiln::data
