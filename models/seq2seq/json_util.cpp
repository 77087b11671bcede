#include "models/seq2seq/json_util.h"

#include <cmath>

#include "core/error.h"

namespace kiln::seq2seq {

nlohmann::json parse_json_object(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    KILN_FAIL(source, ": not valid JSON: ", e.what());
  }
  KILN_CHECK(j.is_object(), source, ": expected a JSON object, got ", j.type_name());
  return j;
}

JsonReader::JsonReader(const std::string& text, std::string source)
    : json_(parse_json_object(text, source)), source_(std::move(source)) {}

JsonReader::JsonReader(nlohmann::json object, std::string source, std::string prefix)
    : json_(std::move(object)), source_(std::move(source)), prefix_(std::move(prefix)) {}

bool JsonReader::has(const char* field) const {
  return json_.contains(field) && !json_.at(field).is_null();
}

const nlohmann::json* JsonReader::find(const char* field, bool has_fallback) const {
  known_.insert(field);
  if (has(field)) return &json_.at(field);
  KILN_CHECK(has_fallback, source_, ": missing field '", prefix_, field, "'");
  return nullptr;
}

void JsonReader::fail(const char* field, const std::string& expected,
                      const nlohmann::json& got) const {
  KILN_FAIL(source_, ": field '", prefix_, field, "': expected ", expected, ", got ", got.dump());
}

int64_t JsonReader::integer(const char* field, std::optional<int64_t> fallback, int64_t min,
                            int64_t max) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  std::string expected = "an integer";
  if (min != kMin && max != kMax) {
    expected += " in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  } else if (min != kMin) {
    expected += " >= " + std::to_string(min);
  } else if (max != kMax) {
    expected += " <= " + std::to_string(max);
  }
  if (value->is_number_unsigned()) {
    uint64_t v = value->get<uint64_t>();
    if (v > static_cast<uint64_t>(max) || static_cast<int64_t>(v) < min) {
      fail(field, expected, *value);
    }
    return static_cast<int64_t>(v);
  }
  if (!value->is_number_integer()) fail(field, expected, *value);
  int64_t v = value->get<int64_t>();
  if (v < min || v > max) fail(field, expected, *value);
  return v;
}

uint64_t JsonReader::unsigned_integer(const char* field, std::optional<uint64_t> fallback) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  // nlohmann reads a non-negative integer literal as unsigned; a negative one as signed.
  if (!value->is_number_unsigned()) fail(field, "an integer >= 0", *value);
  return value->get<uint64_t>();
}

double JsonReader::number(const char* field, std::optional<double> fallback, double min,
                          double max) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  double v = value->is_number() ? value->get<double>() : std::nan("");
  if (!std::isfinite(v) || v < min || v > max) {
    std::string expected = "a finite number";
    if (min != -std::numeric_limits<double>::max()) {
      expected += " >= " + nlohmann::json(min).dump();
    }
    if (max != std::numeric_limits<double>::max()) {
      expected += " <= " + nlohmann::json(max).dump();
    }
    fail(field, expected, *value);
  }
  return v;
}

bool JsonReader::boolean(const char* field, std::optional<bool> fallback) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  if (!value->is_boolean()) fail(field, "true or false", *value);
  return value->get<bool>();
}

std::string JsonReader::string(const char* field, std::optional<std::string> fallback) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  if (!value->is_string()) fail(field, "a string", *value);
  return value->get<std::string>();
}

std::vector<std::string> JsonReader::strings(
    const char* field, std::optional<std::vector<std::string>> fallback) const {
  const nlohmann::json* value = find(field, fallback.has_value());
  if (!value) return *fallback;
  if (!value->is_array()) fail(field, "an array of strings", *value);
  std::vector<std::string> out;
  for (const nlohmann::json& item : *value) {
    if (!item.is_string()) fail(field, "an array of strings", *value);
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::vector<int64_t> JsonReader::integers(const char* field, int64_t min, int64_t max) const {
  const nlohmann::json* value = find(field, false);
  if (!value->is_array()) fail(field, "an array of integers", *value);
  std::vector<int64_t> out;
  out.reserve(value->size());
  for (size_t i = 0; i < value->size(); ++i) {
    const nlohmann::json& item = (*value)[i];
    const bool ok = item.is_number_integer() &&
                    (!item.is_number_unsigned() || item.get<uint64_t>() <= uint64_t{kMax});
    const int64_t v = ok ? item.get<int64_t>() : 0;
    KILN_CHECK(ok && v >= min && v <= max, source_, ": field '", prefix_, field, "' item ", i + 1,
               ": expected an integer in [", min, ", ", max, "], got ", item.dump());
    out.push_back(v);
  }
  return out;
}

JsonReader JsonReader::object(const char* field) const {
  const nlohmann::json* value = find(field, false);
  if (!value->is_object()) fail(field, "a JSON object", *value);
  return JsonReader(*value, source_, prefix_ + field + ".");
}

void JsonReader::ignore(const char* field) const { known_.insert(field); }

void JsonReader::reject_unknown_fields() const {
  for (const auto& item : json_.items()) {
    KILN_CHECK(known_.count(item.key()), source_, ": unknown field '", prefix_, item.key(),
               "' (a misspelt option?)");
  }
}

}  // namespace kiln::seq2seq
