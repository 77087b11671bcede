#include "kernels/index.h"

#include <algorithm>
#include <vector>

#include "core/cuda_runtime.h"
#include "kernels/broadcast.h"
#include "kernels/dispatch.h"
#include "kernels/factories.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

namespace {

// Row n of out is row index[n] of the table. Called per (row, column) so the CPU copies a row as a
// vector loop (a flat index costs a 64-bit division per element: 42 us for 640 rows of 32).
template <class T, class I> struct GatherRowsFunctor {
  const T* table;
  const I* index;
  T* out;
  int64_t cols;
  KILN_HD void operator()(int64_t n, int64_t c) const {
    out[n * cols + c] = table[static_cast<int64_t>(index[n]) * cols + c];
  }
};

// Adds to table row k the grad_out rows positions[starts[k] .. starts[k+1]) (the device path; the
// CPU's is scatter_add_rows_cpu, the same sums by blocks of columns).
template <class T> struct ScatterAddRowsFunctor {
  const T* grad_out;
  const int64_t* starts;
  const int64_t* positions;
  T* grad_table;
  int64_t cols;
  KILN_HD void operator()(int64_t k, int64_t c) const {
    if (starts[k] == starts[k + 1]) return;  // an untouched row (device grouping) stays as it is
    T total = T(0);
    for (int64_t p = starts[k]; p < starts[k + 1]; ++p) total += grad_out[positions[p] * cols + c];
    grad_table[k * cols + c] += total;
  }
};

// The device grouping of scatter_add_rows: counts[v + 1] = how many n have index[n] == v (none for
// skip_row); then starts = the running sum of counts (one thread); then every row's positions in
// increasing n.
template <class I> struct CountRowsFunctor {
  const I* index;
  int64_t n, skip_row;
  int64_t* starts;  // [V + 1]; [v + 1] gets row v's count
  KILN_HD void operator()(int64_t v) const {
    int64_t count = 0;
    if (v != skip_row) {
      for (int64_t i = 0; i < n; ++i) count += static_cast<int64_t>(index[i]) == v;
    }
    starts[v + 1] = count;
  }
};
struct ScanRowsFunctor {
  int64_t* starts;
  int64_t rows;
  KILN_HD void operator()(int64_t) const {
    int64_t total = 0;  // in a register: each step waits for one load, not for the last store
    starts[0] = 0;
    for (int64_t v = 1; v <= rows; ++v) {
      total += starts[v];
      starts[v] = total;
    }
  }
};
template <class I> struct PlaceRowsFunctor {
  const I* index;
  int64_t n, skip_row;
  const int64_t* starts;
  int64_t* positions;
  KILN_HD void operator()(int64_t v) const {
    if (v == skip_row) return;
    int64_t next = starts[v];
    for (int64_t i = 0; i < n; ++i) {
      if (static_cast<int64_t>(index[i]) == v) positions[next++] = i;
    }
  }
};

template <class T, class I> struct SequenceMaskFunctor {
  const I* lengths;
  T* mask;
  int64_t batch;
  KILN_HD void operator()(int64_t t, int64_t b) const {
    mask[t * batch + b] = t < static_cast<int64_t>(lengths[b]) ? T(1) : T(0);
  }
};

template <class C, class T> struct WhereBackwardFunctor {
  const C* cond;
  const T* grad_y;
  T* grad_a;
  T* grad_b;
  BroadcastIndexer index;
  KILN_HD void operator()(int64_t i) const {
    bool take_a = cond[index.offset(0, i)] != C(0);
    if (grad_a) grad_a[i] = take_a ? grad_y[i] : T(0);
    if (grad_b) grad_b[i] = take_a ? T(0) : grad_y[i];
  }
};

template <class C, class T> struct WhereFunctor {
  const C* cond;
  const T* a;
  const T* b;
  T* y;
  BroadcastIndexer index;
  KILN_HD void operator()(int64_t i) const {
    y[i] = cond[index.offset(0, i)] != C(0) ? a[index.offset(1, i)] : b[index.offset(2, i)];
  }
};

std::vector<int64_t> index_to_host(const Tensor& index) {
  std::vector<int64_t> host(index.numel());
  KILN_DISPATCH_INDEX(index.dtype(), "index", [&] {
    std::vector<scalar_t> raw = index.to_vector<scalar_t>();
    for (size_t i = 0; i < raw.size(); ++i) host[i] = raw[i];
  });
  return host;
}

// ScatterAddRowsFunctor's sums on the CPU, in its order (each touched row's gradient rows added in
// increasing position, then the total added to the table: CPU and CUDA agree bit for bit), but a
// block of columns at a time, so the adds are vector adds of whole rows (per column, as the functor
// does it, GCC left a chain of dependent scalar adds). The small model's embedding backward, 640
// rows of 32 with the host grouping: 61 us a call as flat functor calls, 9 us now (profiler).
template <class T>
void scatter_add_rows_cpu(const T* grad_out, const std::vector<int64_t>& rows,
                          const std::vector<int64_t>& starts, const std::vector<int64_t>& positions,
                          T* grad_table, int64_t cols) {
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (cols + kBlock - 1) / kBlock, tasks = static_cast<int64_t>(rows.size()) * blocks;
  const int threads = threads_for(static_cast<int64_t>(positions.size()) * cols);
  profiler::ProfileScope scope("scatter_add rows", profiler::Category::kernel, threads > 1);
  scope.add_items(tasks);
  cpu_for(threads, tasks, [&](int64_t task) {
    const int64_t k = task / blocks, c0 = (task % blocks) * kBlock,
                  width = std::min(kBlock, cols - c0);
    T total[kBlock];  // the first `width` zeroed (all 256 would be 8x the work at 32 columns)
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) total[c] = T(0);
    for (int64_t p = starts[k]; p < starts[k + 1]; ++p) {
      const T* row = grad_out + positions[p] * cols + c0;
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) total[c] += row[c];
    }
    T* out = grad_table + rows[k] * cols + c0;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) out[c] += total[c];
  });
}

}  // namespace

std::vector<int64_t> index_values(const Tensor& index, const Tensor& host_copy, const char* op) {
  if (!host_copy.defined()) return index_to_host(index);
  KILN_CHECK(host_copy.device().is_cpu() && host_copy.numel() == index.numel() &&
                 (host_copy.dtype() == DType::i32 || host_copy.dtype() == DType::i64),
             op, ": the host copy of the index must be an integer tensor on the cpu with the ",
             index.numel(), " values of ", index.describe(), ", got ", host_copy.describe());
  std::vector<int64_t> host(host_copy.numel());
  KILN_DISPATCH_INDEX(host_copy.dtype(), op, [&] {
    const scalar_t* values = host_copy.data<scalar_t>();  // host memory: no sync, no copy back
    for (size_t i = 0; i < host.size(); ++i) host[i] = values[i];
  });
  return host;
}

void check_index_range(const Tensor& index, int64_t limit, const char* op,
                       const Tensor& host_index) {
  std::vector<int64_t> host = index_values(index, host_index, op);
  for (size_t n = 0; n < host.size(); ++n) {
    KILN_CHECK(host[n] >= 0 && host[n] < limit, op, ": index ", host[n], " at position ", n,
               " is out of range for a table of ", limit, " rows (expected 0 <= index < ", limit,
               ")");
  }
}

void gather_rows(const Tensor& table, const Tensor& index, const Tensor& out) {
  int64_t cols = table.numel() / table.size(0);
  KILN_DISPATCH_ALL(table.dtype(), "gather_rows", [&] {
    using T = scalar_t;
    KILN_DISPATCH_INDEX(index.dtype(), "gather_rows", [&] {
      parallel_for_rows(table.device(), index.numel(), cols,
                        GatherRowsFunctor<T, scalar_t>{table.data<T>(), index.data<scalar_t>(),
                                                       out.data<T>(), cols});
    });
  });
}

void scatter_add_rows_grouped_on_device(const Tensor& grad_out, const Tensor& index,
                                        const Tensor& grad_table, int64_t skip_row) {
  const Device device = grad_table.device();
  const int64_t vocab = grad_table.size(0), cols = grad_table.numel() / vocab, n = index.numel();
  Tensor starts = empty({vocab + 1}, {DType::i64, device});
  Tensor positions = empty({std::max<int64_t>(n, 1)}, {DType::i64, device});
  int64_t* starts_p = starts.data<int64_t>();
  KILN_DISPATCH_INDEX(index.dtype(), "embedding backward", [&] {
    const scalar_t* index_p = index.data<scalar_t>();
    parallel_for(device, vocab, CountRowsFunctor<scalar_t>{index_p, n, skip_row, starts_p}, 64);
    parallel_for(device, 1, ScanRowsFunctor{starts_p, vocab});
    parallel_for(device, vocab,
                 PlaceRowsFunctor<scalar_t>{index_p, n, skip_row, starts_p,
                                            positions.data<int64_t>()},
                 64);
  });
  KILN_DISPATCH_FLOAT(grad_table.dtype(), "scatter_add_rows", [&] {
    parallel_for_rows(device, vocab, cols,
                      ScatterAddRowsFunctor<scalar_t>{grad_out.data<scalar_t>(), starts_p,
                                                      positions.data<int64_t>(),
                                                      grad_table.data<scalar_t>(), cols});
  });
}

void sequence_mask(const Tensor& lengths, const Tensor& mask) {
  const int64_t steps = mask.size(0), batch = mask.size(1);
  KILN_DISPATCH_FLOAT(mask.dtype(), "sequence_mask", [&] {
    using T = scalar_t;
    KILN_DISPATCH_INDEX(lengths.dtype(), "sequence_mask", [&] {
      parallel_for_rows(mask.device(), steps, batch,
                        SequenceMaskFunctor<T, scalar_t>{lengths.data<scalar_t>(), mask.data<T>(),
                                                         batch});
    });
  });
}

void scatter_add_rows(const Tensor& grad_out, const Tensor& index, const Tensor& grad_table,
                      int64_t skip_row, const Tensor& host_index) {
  if (!grad_table.device().is_cpu()) {
    scatter_add_rows_grouped_on_device(grad_out, index, grad_table, skip_row);
    return;
  }
  int64_t cols = grad_table.numel() / grad_table.size(0);
  int64_t vocab = grad_table.size(0);
  // Counting sort of positions by row, on the host: keeps the sum order fixed (increasing n).
  std::vector<int64_t> host = index_values(index, host_index, "embedding backward");
  std::vector<int64_t> count(vocab + 1, 0);
  for (int64_t v : host) count[v + 1] += v != skip_row;
  std::vector<int64_t> rows, starts{0};
  for (int64_t v = 0; v < vocab; ++v) {
    if (count[v + 1]) {
      rows.push_back(v);
      starts.push_back(starts.back() + count[v + 1]);
    }
  }
  std::vector<int64_t> next(vocab, 0);
  for (size_t k = 0; k < rows.size(); ++k) next[rows[k]] = starts[k];
  std::vector<int64_t> positions(starts.back());
  for (size_t n = 0; n < host.size(); ++n) {
    if (host[n] != skip_row) positions[next[host[n]]++] = static_cast<int64_t>(n);
  }
  if (rows.empty()) return;
  KILN_DISPATCH_FLOAT(grad_table.dtype(), "scatter_add_rows", [&] {
    scatter_add_rows_cpu(grad_out.data<scalar_t>(), rows, starts, positions,
                         grad_table.data<scalar_t>(), cols);
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& y) {
  BroadcastIndexer index =
      BroadcastIndexer::make(y.shape(), {&cond.shape(), &a.shape(), &b.shape()});
  KILN_DISPATCH_ALL(y.dtype(), "where", [&] {
    using T = scalar_t;
    KILN_DISPATCH_ALL(cond.dtype(), "where", [&] {
      parallel_for(y.device(), y.numel(),
                   WhereFunctor<scalar_t, T>{cond.data<scalar_t>(), a.data<T>(), b.data<T>(),
                                             y.data<T>(), index});
    });
  });
}

void where_backward(const Tensor& cond, const Tensor& grad_y, const Tensor& grad_a_full,
                    const Tensor& grad_b_full) {
  BroadcastIndexer index = BroadcastIndexer::make(grad_y.shape(), {&cond.shape()});
  KILN_DISPATCH_FLOAT(grad_y.dtype(), "where_backward", [&] {
    using T = scalar_t;
    KILN_DISPATCH_ALL(cond.dtype(), "where_backward", [&] {
      parallel_for(grad_y.device(), grad_y.numel(),
                   WhereBackwardFunctor<scalar_t, T>{
                       cond.data<scalar_t>(), grad_y.data<T>(),
                       grad_a_full.defined() ? grad_a_full.data<T>() : nullptr,
                       grad_b_full.defined() ? grad_b_full.data<T>() : nullptr, index});
    });
  });
}

}  // namespace kiln::kernels
