// libFuzzer target: the vocabulary reader, data::Vocab::parse (the code path behind
// Vocab::load), on any bytes. A bad file must be a kiln::Error naming path:line; a vocabulary
// that loads must be consistent: token(id(t)) == t for every token, and from_tokens of its
// tokens gives the same vocabulary.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "models/data/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    kiln::data::Vocab vocab = kiln::data::Vocab::parse(text, "fuzz_vocab.txt");
    for (int64_t id = 0; id < vocab.size(); ++id) {
      if (vocab.id(vocab.token(id)) != id) __builtin_trap();
    }
    if (kiln::data::Vocab::from_tokens(vocab.tokens()) != vocab) __builtin_trap();
  } catch (const kiln::Error&) {
  }
  return 0;
}
