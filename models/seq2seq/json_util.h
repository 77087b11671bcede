// The one checked reader of kiln's JSON files (config.json, state.json, --config files): a JSON
// object read field by field, where every error names the file (`source`), the field and what was
// wrong ("runs/x/state.json: field 'epoch': expected an integer >= 0, got -5"). Integers must be
// integers (128.5 is not truncated), numbers finite, and a file may hold no field the reader does
// not know (a typo is an error, not a silently ignored setting). nlohmann-json stays out of the
// public headers: only models/seq2seq .cpp files include this one.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::seq2seq {

// Parses `text` as a JSON object; errors name `source` (a file) and what is wrong.
nlohmann::json parse_json_object(const std::string& text, const std::string& source);

class JsonReader {
 public:
  static constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  static constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

  JsonReader(const std::string& text, std::string source);

  bool has(const char* field) const;
  // Each getter: without `fallback` the field is required; with it, an absent field (or null)
  // gives the fallback.
  int64_t integer(const char* field, std::optional<int64_t> fallback = std::nullopt,
                  int64_t min = kMin, int64_t max = kMax) const;
  uint64_t unsigned_integer(const char* field,
                            std::optional<uint64_t> fallback = std::nullopt) const;
  double number(const char* field, std::optional<double> fallback = std::nullopt,
                double min = -std::numeric_limits<double>::max(),
                double max = std::numeric_limits<double>::max()) const;
  bool boolean(const char* field, std::optional<bool> fallback = std::nullopt) const;
  std::string string(const char* field, std::optional<std::string> fallback = std::nullopt) const;
  std::vector<std::string> strings(const char* field,
                                   std::optional<std::vector<std::string>> fallback) const;
  // A required array of integers in [min, max]; errors name the item.
  std::vector<int64_t> integers(const char* field, int64_t min = kMin, int64_t max = kMax) const;
  // A nested object (required): its errors say "<source>: field '<field>.<name>'".
  JsonReader object(const char* field) const;
  // Marks a field as known without reading it (informational fields).
  void ignore(const char* field) const;
  // After every getter: errors naming the first field that no getter asked for.
  void reject_unknown_fields() const;

 private:
  JsonReader(nlohmann::json object, std::string source, std::string prefix);
  // The field's value, or nullptr when it is absent or null (then `fallback` must exist).
  const nlohmann::json* find(const char* field, bool has_fallback) const;
  [[noreturn]] void fail(const char* field, const std::string& expected,
                         const nlohmann::json& got) const;

  nlohmann::json json_;
  std::string source_, prefix_;
  mutable std::set<std::string> known_;
};

}  // namespace kiln::seq2seq
