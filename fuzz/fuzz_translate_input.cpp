// libFuzzer target: kiln translate's input path up to the model. data::parse_input_lines (stdin
// cleaned as a corpus side: CRLF, BOM, strict UTF-8, trim), then the word tokenizer and a small
// vocabulary's encode, as Translator::translate does. Outputs must stay aligned with inputs (one
// sentence per line of split_lines), every sentence valid UTF-8 and trimmed (no CR or space at
// either end). The first byte picks --strict.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "models/data/corpus.h"
#include "models/data/text_file.h"
#include "models/data/tokenizer.h"
#include "models/data/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const kiln::data::Vocab vocab =
      kiln::data::Vocab::build({{"un", "deux", "trois", "."}, {"3", "5", "quatre"}});
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  kiln::data::ReadOptions options;
  options.skip_bad_lines = (data[0] & 1) == 0;
  try {
    kiln::data::InputLines input = kiln::data::parse_input_lines(text, "stdin", options);
    if (input.sentences.size() != kiln::data::split_lines(text).size()) __builtin_trap();
    for (const std::string& sentence : input.sentences) {
      if (!kiln::data::valid_utf8(sentence)) __builtin_trap();
      if (!sentence.empty() && (std::isspace(static_cast<unsigned char>(sentence.front())) ||
                                std::isspace(static_cast<unsigned char>(sentence.back()))))
        __builtin_trap();
      for (int64_t id : vocab.encode(kiln::data::tokenize_d2l(sentence))) {
        if (id < 0 || id >= vocab.size()) __builtin_trap();
      }
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
