// MultiTensorPlan::prepare (kernels/multi_tensor.h): checks the lists, counts the chunks and,
// for CUDA, builds the device table: [lists x tensors] pointers, [tensors] sizes, [tensors + 1]
// first chunks (about 8 * (L + 2) * tensors bytes, copied only when the pointers change).
#include "kernels/multi_tensor.h"

#include "core/cuda_runtime.h"
#include "kernels/factories.h"

namespace kiln::kernels {

void MultiTensorPlan::prepare(const TensorLists& lists, const char* op) {
  KILN_CHECK(!lists.empty() && lists.size() <= static_cast<size_t>(kMaxLists), op,
             ": expected 1 to ", kMaxLists, " tensor lists, got ", lists.size());
  size_t count = lists[0].size();
  std::vector<const void*> key;
  for (size_t l = 0; l < lists.size(); ++l) {
    KILN_CHECK(lists[l].size() == count, op, ": list ", l, " has ", lists[l].size(),
               " tensors, list 0 has ", count);
    for (size_t n = 0; n < count; ++n) {
      const Tensor& t = lists[l][n];
      KILN_CHECK(t.defined(), op, ": tensor ", n, " of list ", l,
                 " is undefined (a parameter without a gradient?)");
      const Tensor& first = lists[0][0];
      KILN_CHECK(t.dtype() == first.dtype() && t.device() == first.device() &&
                     t.numel() == lists[0][n].numel(),
                 op, ": tensor ", n, " of list ", l, " is ", t.describe(), ", expected ",
                 dtype_name(first.dtype()), " on ", first.device().str(), " with ",
                 lists[0][n].numel(), " elements");
      key.push_back(t.raw_data());
    }
  }
  num_lists_ = static_cast<int>(lists.size());
  num_tensors_ = static_cast<int64_t>(count);
  if (count == 0 || lists[0][0].device().is_cpu()) {
    num_chunks_ = 0;
    for (size_t n = 0; n < count; ++n) num_chunks_ += multi_tensor_chunks(lists[0][n].numel());
    return;
  }
  if (key == key_ && table_.defined()) return;  // same tensors as last time: the table is valid
  std::vector<int64_t> table;
  for (size_t l = 0; l < lists.size(); ++l) {
    for (size_t n = 0; n < count; ++n)
      table.push_back(reinterpret_cast<int64_t>(lists[l][n].raw_data()));
  }
  std::vector<int64_t> first_chunk{0};
  for (size_t n = 0; n < count; ++n) {
    int64_t numel = lists[0][n].numel();
    table.push_back(numel);
    first_chunk.push_back(first_chunk.back() + multi_tensor_chunks(numel));
  }
  num_chunks_ = first_chunk.back();
  table.insert(table.end(), first_chunk.begin(), first_chunk.end());
  table_ = copy_to(from_vector(table, {static_cast<int64_t>(table.size())}),
                   {DType::i64, lists[0][0].device()});
  key_ = std::move(key);
}

}  // namespace kiln::kernels
