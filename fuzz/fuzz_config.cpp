// libFuzzer target: the config.json readers, seq2seq::ModelConfig::from_json (a model section)
// and seq2seq::TrainOptions::from_json (a whole checkpoint config.json or a --config file), then
// validate(), on any text. Every bad file must be a kiln::Error naming it; a JSON library
// exception, a sanitizer report (a float cast out of an integer's range) or a crash is a finding.
// A config that validates must round-trip through to_json unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  using kiln::seq2seq::ModelConfig;
  using kiln::seq2seq::TrainOptions;
  try {
    ModelConfig model = ModelConfig::from_json(text, "fuzz/config.json");
    if (ModelConfig::from_json(model.to_json(), "round trip").to_json() != model.to_json())
      __builtin_trap();
  } catch (const kiln::Error&) {
  }
  try {
    TrainOptions options = TrainOptions::from_json(text, "fuzz/config.json");
    std::string json = options.to_json();
    options.validate();
    if (TrainOptions::from_json(json, "round trip").to_json() != json) __builtin_trap();
  } catch (const kiln::Error&) {
  }
  return 0;
}
