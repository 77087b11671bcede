// libFuzzer target: safetensors::parse, the one code path behind safetensors::load, on any bytes.
// Every malformed file must be a kiln::Error; a crash, a sanitizer report, a leak, a huge
// allocation or any other exception is a finding. A file that parses is written back with the
// same header layout check: each tensor's bytes are read through (so ASan sees a short buffer).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    kiln::safetensors::File file = kiln::safetensors::parse(bytes, "fuzz.safetensors");
    size_t total = 0;
    for (const auto& [name, tensor] : file.tensors) {
      const auto* raw = static_cast<const unsigned char*>(tensor.raw_data());
      for (size_t i = 0; i < tensor.nbytes(); ++i) total += raw[i];
    }
    if (total == SIZE_MAX) return 1;  // keeps the reads above from being optimized away
  } catch (const kiln::Error&) {
  }
  return 0;
}
