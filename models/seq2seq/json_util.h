// JSON helpers shared by config.json readers (nlohmann-json stays out of the public headers).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kiln::seq2seq {

// Parses `text` as a JSON object; errors name `source` (a file) and what is wrong.
nlohmann::json parse_json_object(const std::string& text, const std::string& source);

}  // namespace kiln::seq2seq
