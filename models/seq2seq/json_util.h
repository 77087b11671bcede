// JSON helpers shared by config.json readers (nlohmann-json stays out of the public headers).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace kiln::seq2seq {

// Parses `text` as a JSON object; errors name `source` (a file) and what is wrong.
nlohmann::json parse_json_object(const std::string& text, const std::string& source);

// The integer field `key` of the object `j`: a JSON integer within the type's range. nlohmann's
// get<int64_t>() would cast a float such as 1e300 (undefined behaviour, found by fuzz/) or
// truncate 128.5; here a float, a bool, a string, a negative value for the unsigned reader or one
// out of range is an error naming `source`, the field and the value. A missing key throws too.
int64_t json_int64(const nlohmann::json& j, const char* key, const std::string& source);
uint64_t json_uint64(const nlohmann::json& j, const char* key, const std::string& source);
// The same for an optional field: `fallback` when the key is absent.
int64_t json_int64_or(const nlohmann::json& j, const char* key, int64_t fallback,
                      const std::string& source);
uint64_t json_uint64_or(const nlohmann::json& j, const char* key, uint64_t fallback,
                        const std::string& source);

}  // namespace kiln::seq2seq
