// Row gathers and scatters (embedding lookups and their gradient) and select-by-condition.
//   gather_rows:   out[n, :] = table[index[n], :]          table: [V, D], index: [N], out: [N, D]
//   scatter_add_rows: grad_table[v, :] += sum_{n : index[n] == v} grad_out[n, :], summed in
//                  increasing n for every v, so the result is deterministic on every device.
//                  On the CPU the rows touched are grouped on the host (counting sort of the
//                  index), then one thread per (touched row, column) adds its rows in order. On
//                  CUDA they are grouped on the device (scatter_add_rows_grouped_on_device), so the
//                  backward neither reads the index back nor uploads anything, and can be captured
//                  into a CUDA graph; the sums are the same, in the same order.
//   where:         y[i] = cond[i] != 0 ? a[i] : b[i], all three broadcast to y's shape
// Bytes: gather reads N*D table values and writes N*D; scatter reads N*D and read-writes the
// touched rows.
#pragma once

#include "core/tensor.h"

namespace kiln::kernels {

// The values of an integer index tensor on the host, for the checks and the counting sort that
// need them there. host_copy: a CPU tensor of the same values that the caller already holds (the
// ids it uploaded), read in place, so a GPU run does not wait for the device; undefined: the index
// itself is read back (one sync on a GPU, counted by the profiler on any device). A host copy of
// another size or a non-integer one is an error naming `op`.
std::vector<int64_t> index_values(const Tensor& index, const Tensor& host_copy, const char* op);

void gather_rows(const Tensor& table, const Tensor& index, const Tensor& out);
// Rows whose index equals skip_row (an embedding's padding_idx; -1 for none) add nothing.
void scatter_add_rows(const Tensor& grad_out, const Tensor& index, const Tensor& grad_table,
                      int64_t skip_row = -1, const Tensor& host_index = Tensor());
// The CUDA path of scatter_add_rows, also runnable on the CPU (tests compare it with the host
// grouping there): a count per table row, a scan, the positions placed in increasing n, then the
// sums. Each of V threads scans the N indices, O(V N) work, which a GPU does in microseconds at
// the sizes of an embedding's batch.
void scatter_add_rows_grouped_on_device(const Tensor& grad_out, const Tensor& index,
                                        const Tensor& grad_table, int64_t skip_row = -1);
// mask[t, b] = t < lengths[b] ? 1 : 0, made by a kernel on the lengths' device: mask is [T, B] of
// a float dtype on that device. (nn::sequence_mask checks the lengths first.)
void sequence_mask(const Tensor& lengths, const Tensor& mask);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& y);
// grad_a_full[i] = cond ? g : 0, grad_b_full[i] = cond ? 0 : g (at y's shape; either may be
// undefined)
void where_backward(const Tensor& cond, const Tensor& grad_y, const Tensor& grad_a_full,
                    const Tensor& grad_b_full);
// Checks every index is in [0, limit); throws naming `op` and the first bad position otherwise.
void check_index_range(const Tensor& index, int64_t limit, const char* op,
                       const Tensor& host_index = Tensor());

}  // namespace kiln::kernels
