// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011). Element i of a draw with (seed, offset) is a pure function of
// (seed, offset + i), so the CPU and CUDA produce the same numbers for the same seed, and a draw
// can be split across threads in any way.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace kiln {

struct PhiloxOutput {
  uint32_t x[4];
};

KILN_HD inline uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds over the 128-bit counter (`counter` low 64 bits, `stream` high) with the 64-bit key.
KILN_HD inline PhiloxOutput philox4x32(uint64_t counter, uint64_t stream, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 (float) or 53 (double) random bits.
KILN_HD inline float philox_uniform_float(uint32_t bits) {
  return (bits >> 8) * (1.0f / 16777216.0f);
}
KILN_HD inline double philox_uniform_double(uint32_t lo, uint32_t hi) {
  uint64_t bits = (static_cast<uint64_t>(hi) << 32 | lo) >> 11;
  return bits * (1.0 / 9007199254740992.0);
}

// The process-wide stream state: every draw takes `count` numbers starting at `offset`.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5EEDull) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // While a CUDA graph is captured (kernels/cuda_graph.h), the device word that draws read their
  // seed from, so that each replay draws with the seed written there before it; else null.
  const uint64_t* seed_cell() const { return seed_cell_; }
  void set_seed_cell(const uint64_t* cell) { seed_cell_ = cell; }
  // Reserves `count` counters and returns the first.
  uint64_t advance(uint64_t count) {
    uint64_t first = offset_;
    offset_ += count;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  const uint64_t* seed_cell_ = nullptr;
};

Generator& default_generator();
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace kiln
