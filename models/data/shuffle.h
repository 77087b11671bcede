// Deterministic randomness for the data pipeline. std::mt19937_64's output is fixed by the C++
// standard, but std::uniform_int_distribution and std::shuffle are implementation-defined, so
// the same seed would give different batches with libstdc++ and libc++. These helpers are ours:
// the same seed gives the same draws everywhere.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace kiln::data {

// Uniform in [0, n), n >= 1, without modulo bias: draws below 2^64 mod n are rejected, which
// leaves a range whose length is a multiple of n.
inline uint64_t uniform_below(std::mt19937_64& generator, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // == 2^64 mod n
  for (;;) {
    const uint64_t r = generator();
    if (r >= threshold) return r % n;
  }
}

// Fisher-Yates: for i = n-1 .. 1, swap item i with item uniform_below(i + 1).
template <class T> void shuffle_in_place(std::vector<T>& items, std::mt19937_64& generator) {
  for (size_t i = items.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(generator, i));
    std::swap(items[i - 1], items[j]);
  }
}

}  // namespace kiln::data
