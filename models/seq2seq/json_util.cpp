#include "models/seq2seq/json_util.h"

#include "core/error.h"

namespace kiln::seq2seq {

nlohmann::json parse_json_object(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    KILN_FAIL(source, ": not valid JSON: ", e.what());
  }
  KILN_CHECK(j.is_object(), source, ": expected a JSON object");
  return j;
}

namespace {
const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  KILN_CHECK(it != j.end(), source, ": field '", key, "' is missing");
  return *it;
}
}  // namespace

int64_t json_int64(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json& value = field(j, key, source);
  KILN_CHECK(value.is_number_integer(), source, ": field '", key, "' must be an integer, got ",
             value.dump());
  KILN_CHECK(!value.is_number_unsigned() || value.get<uint64_t>() <= uint64_t(INT64_MAX), source,
             ": field '", key, "' = ", value.dump(), " is out of range (at most ", INT64_MAX, ")");
  return value.get<int64_t>();
}

uint64_t json_uint64(const nlohmann::json& j, const char* key, const std::string& source) {
  const nlohmann::json& value = field(j, key, source);
  KILN_CHECK(value.is_number_unsigned(), source, ": field '", key,
             "' must be a non-negative integer, got ", value.dump());
  return value.get<uint64_t>();
}

int64_t json_int64_or(const nlohmann::json& j, const char* key, int64_t fallback,
                      const std::string& source) {
  return j.contains(key) ? json_int64(j, key, source) : fallback;
}

uint64_t json_uint64_or(const nlohmann::json& j, const char* key, uint64_t fallback,
                        const std::string& source) {
  return j.contains(key) ? json_uint64(j, key, source) : fallback;
}

}  // namespace kiln::seq2seq
