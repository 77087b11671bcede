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

// The indexer of operands that all have the output's shape (BroadcastIndexer::trivial): offset ==
// index with no branch, so the CPU loop over a functor that reads through it vectorizes. Through
// BroadcastIndexer, whose offset tests `trivial` for every element, GCC left a same-shape add a
// scalar loop (about 1.3 ns an element: 8 us for a small model's 6k-element gradient sum).
struct SameShapeIndexer {
  KILN_HD int64_t offset(int, int64_t index) const { return index; }
};

// fn(SameShapeIndexer{}) when every operand has the output's shape, else fn(index): a functor
// templated on its indexer is instantiated for both.
template <class Fn> void with_indexer(const BroadcastIndexer& index, Fn&& fn) {
  if (index.trivial) {
    fn(SameShapeIndexer{});
  } else {
    fn(index);
  }
}

}  // namespace kiln
