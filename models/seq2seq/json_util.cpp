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

}  // namespace kiln::seq2seq
