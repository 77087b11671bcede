#include "kernels/broadcast.h"

#include "core/error.h"

namespace kiln {

BroadcastIndexer BroadcastIndexer::make(const Shape& out,
                                        std::initializer_list<const Shape*> operands) {
  BroadcastIndexer indexer;
  KILN_CHECK(out.size() <= static_cast<size_t>(kMaxDims), "broadcast: rank ", out.size(),
             " exceeds the maximum of ", kMaxDims);
  KILN_CHECK(operands.size() <= 3, "broadcast: at most three operands");
  indexer.ndim = static_cast<int>(out.size());
  indexer.num_operands = static_cast<int>(operands.size());
  for (int d = 0; d < indexer.ndim; ++d) indexer.sizes[d] = out[d];
  int k = 0;
  for (const Shape* shape : operands) {
    if (*shape != out) indexer.trivial = false;
    // Align trailing dims; a missing or size-1 dim gets stride 0.
    int64_t stride = 1;
    int offset = indexer.ndim - static_cast<int>(shape->size());
    for (int d = indexer.ndim - 1; d >= 0; --d) {
      int sd = d - offset;
      int64_t size = sd >= 0 ? (*shape)[sd] : 1;
      indexer.strides[k][d] = size == 1 ? 0 : stride;
      stride *= size;
    }
    ++k;
  }
  return indexer;
}

}  // namespace kiln
