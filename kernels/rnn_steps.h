// What the LSTM and GRU time loops (kernels/lstm_layer.cpp, kernels/gru_layer.cpp) share: the
// order in which a layer direction visits its T steps, and the shape of the per-step recurrent
// GEMM hg = h_{t-1} W_hh^T ([B, H] x [G*H, H]^T -> [B, G*H], 2 B G H^2 FLOPs) or, backward,
// dh += dgates_t W_hh ([B, G*H] x [G*H, H] -> [B, H], the same FLOPs, accumulated with +=).
// Host code only: the loops launch one GEMM and one gate kernel per step.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <vector>

#include "core/autocast.h"
#include "core/profiler.h"
#include "kernels/copy.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"
#include "kernels/parallel_for.h"

namespace kiln::kernels {

// Step s of T in processing order -> time index; and the time index processed next.
struct StepOrder {
  int64_t steps;
  bool reverse;
  int64_t time(int64_t s) const { return reverse ? steps - 1 - s : s; }
  int64_t next_time(int64_t s) const { return reverse ? steps - 2 - s : s + 1; }
};

// hg = h W_hh^T (transpose_w, forward) or dh += dg W_hh (backward) for one step, with
// gates_width = G * H.
inline GemmShape recurrent_gemm(int64_t batch, int64_t gates_width, int64_t hidden,
                                bool transpose_w) {
  GemmShape g;
  g.trans_b = transpose_w;
  g.m = batch;
  g.n = transpose_w ? gates_width : hidden;
  g.k = transpose_w ? hidden : gates_width;
  return g;
}

// The forward GEMM's weight operand: on the CPU, W_hh^T [H, G*H] transposed once per layer call
// into `packed`, so each step is a plain (untransposed) product, when
//  - the product is small: libxsmm's JIT kernels take no transposed B (kSmallGemmVolume), or
//  - it goes to oneDNN and the call runs several steps: oneDNN's sgemm re-packs a transposed B at
//    every call, which halves its rate on these few-row products (64 x 1536 x 512: 150-165
//    GFLOP/s against 305-340 untransposed, bench/RESULTS.md), and the one transpose is repaid by
//    the second step.
// Otherwise W_hh itself, which OpenBLAS and cuBLAS read transposed as fast. A caller's own W_hh^T
// (`w_hh_t`, RnnWeights::w_hh_t) is used as it is. Sets `shape` to match.
template <class T>
const T* recurrent_weights(const Tensor& w_hh, const Tensor& w_hh_t, Tensor& packed,
                           GemmShape& shape, int64_t steps) {
  if (w_hh_t.defined()) {
    shape.trans_b = false;
    return w_hh_t.data<T>();
  }
  GemmShape untransposed = shape;
  untransposed.trans_b = false;
  const bool small = shape.m * shape.n * shape.k <= kSmallGemmVolume;
  const bool to_onednn =
      steps > 1 && cpu_gemm_library(w_hh.dtype(), untransposed) == CpuGemmLibrary::onednn;
  if (w_hh.device().is_cuda() || !(small || to_onednn)) return w_hh.data<T>();
  packed = empty({w_hh.size(1), w_hh.size(0)}, w_hh.options());
  permute(w_hh, {1, 0}, packed);
  shape.trans_b = false;
  return packed.data<T>();
}

// Batch blocks. A row of the batch reads only its own earlier state, so on the CPU a layer's time
// loop can run as independent loops over contiguous blocks of batch rows, one per thread: each
// block's steps are a recurrent GEMM on its rows (rows x G*H x H, on its own thread) and the gate
// kernel on its rows, and the blocks never wait for each other. The whole walk costs one fork/join,
// where threading each step's GEMM and gate kernel costs two a step, and small steps (a small
// RNN's 64 x 96 x 32 product, 4 us) are too short to thread at all.
// The blocks: one per thread (num_threads()), each at least kMinBlockRows rows, when the walk's
// recurrent multiply-adds (steps * B * G*H * H) reach kParallelGrain; else 1, the whole batch on
// the caller, each step's GEMM and gate kernel threaded as they choose. Always 1 on CUDA.
// Also 1 for a walk of one step (a decoding step) whose product the GEMM threads by itself (over
// kSingleThreadGemmVolume) and whose blocks would have fewer than kStreamingBlockRows rows: a
// decoding step finds its weights out of cache (it reads every layer's and the output layer's in
// turn), and a block of few rows streams all of W_hh for little work (2 m FLOPs a weight), where
// the threaded GEMM splits W_hh's columns, each thread streaming half of it. A GRU of H = 512 at
// B = 64 (W_hh^T 3 MB, beyond a core's L2): in a greedy decode the blocks' 32 x 1536 x 512 products
// ran at 79 GFLOP/s a thread, the whole batch's threaded product at 190 on two; in a standalone
// loop over 5 such weights, a barrier a step, 557-730 against 478-504 us a step; greedy decoding
// with the shortlist, 6 interleaved pairs, medians 128-133 against 133-141 ms. Beam 5's blocks of
// 160 rows timed the same either way (733-771 against 747-809 ms), and walks of many steps keep the
// blocks: there W_hh stays cached, and the whole batch's two fork/joins a step measured no better
// (BM_OnednnVsKiln, T = 50, H = 512: GRU fwd+bwd 0.91-0.95 with blocks, 0.98-1.01 whole).
constexpr int64_t kMinBlockRows = 8;
constexpr int64_t kStreamingBlockRows = 64;

inline int batch_blocks(Device device, int64_t steps, const GemmShape& step_gemm) {
  if (!device.is_cpu()) return 1;
  const int64_t batch = step_gemm.m;
  if (steps * batch * step_gemm.n * step_gemm.k < kParallelGrain) return 1;
  const int64_t most = batch / kMinBlockRows;
  const int blocks = static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(most, 1)));
  const bool streaming = steps == 1 && batch < kStreamingBlockRows * blocks &&
                         batch * step_gemm.n * step_gemm.k > kSingleThreadGemmVolume;
  return streaming ? 1 : blocks;
}

struct BatchBlock {
  int64_t begin, end;  // its rows
  GemmShape gemm;      // the step's recurrent GEMM on those rows
  bool whole;          // the whole batch, on the caller: the step's kernels may thread themselves
};

// body(block) for each block of the walk's batch_blocks, one OpenMP thread a block (a smaller team
// takes several); one block runs on the caller. An exception in a block is rethrown here, after
// every block ended.
template <class Body>
void for_batch_blocks(Device device, int64_t steps, const GemmShape& step_gemm, const Body& body) {
  const int blocks = batch_blocks(device, steps, step_gemm);
  const int64_t batch = step_gemm.m;
  auto block = [&](int i) {  // rows [batch * i / blocks, batch * (i + 1) / blocks)
    BatchBlock b{batch * i / blocks, batch * (i + 1) / blocks, step_gemm, blocks == 1};
    b.gemm.m = b.end - b.begin;
    return b;
  };
  if (blocks == 1) {
    body(block(0));
    return;
  }
  profiler::ProfileScope scope("rnn batch blocks", profiler::Category::kernel);
  scope.add_items(blocks);
  std::vector<std::exception_ptr> errors(blocks);
  // The products read a per-thread setting (bf16 inputs, core/autocast.h): the team's threads take
  // the caller's.
  const DType gemm_inputs = Autocast::gemm_inputs();
#pragma omp parallel num_threads(blocks)
  {
    AutocastScope autocast(gemm_inputs);
    for (int i = omp_get_thread_num(); i < blocks; i += omp_get_num_threads()) {
      try {
        body(block(i));
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

// A padded row (mask 0) keeps its state at that step, so its recurrent product is never read:
// on the CPU a step multiplies only its block's real rows. When those lead the block (rows sorted
// by length, as `kiln translate` batches them) the product runs on them in place. When padding is
// scattered among them and makes at least 1/kPackPaddingShare of the rows up to the last real one,
// the real rows are packed, multiplied and unpacked: a copy of K + N floats a row against the
// product's 2 K N FLOPs a row (2,048 floats against 1.6 MFLOP for a GRU of H = 512). Else the
// product runs on every row up to the last real one. On CUDA (the mask is on the device) every row
// is multiplied. The large bench workloads pad ~20% of their steps: this took a greedy decode from
// 35.3 to 34.0 GFLOP (the encoder's share).
// c = a w (+ beta c) on the block's rows, a: [B, K], c: [B, N] (N = the block's gemm.n). With
// beta = 0 (forward) a padded row's c is set to 0: the gate kernel reads it, and what it saves from
// it must stay finite (the backward kernels multiply it by 0); with beta = 1 (backward, where a
// padded row's a is 0) it is left as it is.
constexpr int64_t kPackPaddingShare = 8;

template <class T> class RealRowsProduct {
 public:
  RealRowsProduct(Device device, DType dtype, const BatchBlock& block)
      : device_(device), dtype_(dtype), block_(block) {
    if (device.is_cpu()) real_.reserve(block.end - block.begin);
  }

  void operator()(const T* mask, const T* a, const T* w, double beta, T* c) {
    const int64_t begin = block_.begin, end = block_.end, K = block_.gemm.k, N = block_.gemm.n;
    if (!device_.is_cpu()) {
      gemm(device_, dtype_, block_.gemm, 1.0, a + begin * K, w, beta, c + begin * N);
      return;
    }
    real_.clear();
    for (int64_t b = begin; b < end; ++b) {
      if (mask[b] != T(0)) real_.push_back(b);
    }
    const int64_t real = static_cast<int64_t>(real_.size());
    const int64_t span = real == 0 ? 0 : real_.back() + 1 - begin;  // rows up to the last real one
    GemmShape shape = block_.gemm;
    if ((span - real) * kPackPaddingShare < span) {  // padding only after them, or little of it
      if (beta == 0) std::fill(c + (begin + span) * N, c + end * N, T(0));
      if (span == 0) return;
      shape.m = span;
      gemm(device_, dtype_, shape, 1.0, a + begin * K, w, beta, c + begin * N);
      return;
    }
    // Sized at the first packed step only: most walks never pack (a decoding step's 512 KB of
    // zeroed buffers were a cost of their own).
    if (packed_a_.empty()) {
      packed_a_.resize((end - begin) * K);
      packed_c_.resize((end - begin) * N);
    }
    for (int64_t i = 0; i < real; ++i) {
      std::copy_n(a + real_[i] * K, K, packed_a_.data() + i * K);
      if (beta != 0) std::copy_n(c + real_[i] * N, N, packed_c_.data() + i * N);
    }
    shape.m = real;
    gemm(device_, dtype_, shape, 1.0, packed_a_.data(), w, beta, packed_c_.data());
    for (int64_t b = begin, i = 0; b < end; ++b) {
      if (i < real && real_[i] == b) {
        std::copy_n(packed_c_.data() + i++ * N, N, c + b * N);
      } else if (beta == 0) {
        std::fill_n(c + b * N, N, T(0));
      }
    }
  }

 private:
  Device device_;
  DType dtype_;
  BatchBlock block_;
  std::vector<int64_t> real_;           // the step's real rows
  std::vector<T> packed_a_, packed_c_;  // their rows of a and c, packed
};

// One step's gate kernel f(row, col) on a block's rows of the [batch, cols] grid: serial inside a
// block, parallel_for_rows over the whole batch.
template <class F>
void block_rows(Device device, const BatchBlock& block, int64_t batch, int64_t cols, const F& f) {
  if (block.whole) {
    parallel_for_rows(device, batch, cols, f, /*grain=*/4096);
  } else {
    cpu_rows(block.begin, block.end, cols, f);
  }
}

}  // namespace kiln::kernels
