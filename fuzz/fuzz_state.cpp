// libFuzzer target: the state.json reader, seq2seq::parse_train_state (the code path behind
// load_train_state, which resume uses), on any text. A bad file must be a kiln::Error naming
// it; a JSON library exception, a sanitizer report (a float cast out of an integer's range) or a
// crash is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "models/seq2seq/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    kiln::seq2seq::TrainState state = kiln::seq2seq::parse_train_state(text, "fuzz/state.json");
    if (state.rng_seed == 1 && state.rng_offset == 2 && state.epoch == 3) return 0;
  } catch (const kiln::Error&) {
  }
  return 0;
}
