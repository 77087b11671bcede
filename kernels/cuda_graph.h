// CudaGraph: kiln's CUDA work captured once and replayed with one launch, for steps that are
// hundreds of small kernels (a small training step is launch-bound: its launches cost more host
// time than its kernels take on the device).
//
//   cuda::StreamScope stream;       // capture needs a stream of kiln's own
//   CudaGraph graph(device);
//   graph.capture([&] { step(static_inputs); });  // records, runs nothing
//   for (...) { copy the next inputs into static_inputs; manual_seed(s); graph.replay(); }
//
// What a replay does is what the capture recorded, on the same memory:
// - Memory: the capture's allocations come from the graph's own pool (core/allocator.h), so every
//   tensor the graph wrote or read is where the capture left it. Tensors made before the capture
//   (parameters, gradients, optimizer state, the static inputs) are read and written in place.
// - Nothing crosses to the host inside a capture: a read of device values on the host or an upload
//   of host values is an error naming the op (cuda::check_not_capturing).
// - Scalars that change from step to step must live on the device: the optimizer's learning rate
//   (nn::Optimizer::set_lr writes its device copy) and the random seed. Dropout reads its seed
//   from the graph's seed cell, which replay() fills with the generator's seed; draws take the
//   offsets of the capture, so replay() needs the generator at the offset the capture began at
//   (as after the same manual_seed), and leaves it where the capture ended.
// - The shapes are the capture's: one graph per distinct input shape.
// In a build without CUDA, or without a GPU, capture() and replay() raise a kiln::Error.
#pragma once

#include <functional>
#include <memory>

#include "core/allocator.h"
#include "core/device.h"
#include "core/tensor.h"

namespace kiln {

class CudaGraph {
 public:
  explicit CudaGraph(Device device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records the CUDA work `work` queues on the current stream, which must be a
  // cuda::StreamScope's. The work does not run: replay() runs it. An exception from `work` ends
  // the capture, discards it and propagates.
  void capture(const std::function<void()>& work);
  void replay();
  bool captured() const { return exec_ != nullptr; }
  // The graph pool's memory (its in_use is what the capture's live tensors hold).
  AllocatorStats pool_stats() const;
  // Kernels in the captured graph.
  size_t num_nodes() const { return num_nodes_; }

 private:
  void release();

  Device device_;
  std::shared_ptr<GraphPool> pool_;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  Tensor seed_cell_;       // u64 as i64 [1]
  uint64_t rng_begin_ = 0, rng_end_ = 0;
  size_t num_nodes_ = 0;
};

}  // namespace kiln
