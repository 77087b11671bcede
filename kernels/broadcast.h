// NumPy-style broadcast indexing for up to three operands: maps a flat index of the output to
// the flat offset of each operand (stride 0 along broadcast dims).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/shape.h"
#include "kernels/parallel_for.h"

namespace kiln {

constexpr int kMaxDims = 8;

struct BroadcastIndexer {
  int ndim = 0;
  int num_operands = 0;
  bool trivial = true;  // every operand has the output's shape: offset == index
  int64_t sizes[kMaxDims] = {};
  int64_t strides[3][kMaxDims] = {};

  static BroadcastIndexer make(const Shape& out, std::initializer_list<const Shape*> operands);

  KILN_HD int64_t offset(int operand, int64_t index) const {
    if (trivial) return index;
    int64_t offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t coord = index % sizes[d];
      index /= sizes[d];
      offset += coord * strides[operand][d];
    }
    return offset;
  }
};

}  // namespace kiln
