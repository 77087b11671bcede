// Data parallelism for any kiln model: every rank holds the whole model and computes the gradient
// of its share of the global batch; backward() leaves on every rank the gradient of the global
// batch, so clipping and the optimizer then run unchanged and every rank takes the same step.
//
//   dist::DataParallel dp(model.parameters());   // rank 0's initial values broadcast to all
//   for each step:
//     opt.zero_grad();
//     Tensor loss = ...this rank's share of the batch...;
//     dp.backward(loss);                          // instead of kiln::backward(loss)
//     opt.step(clip_grad_norm(params, 1.0) ...);
//
// Gradients travel in buckets of about `bucket_bytes`, filled in reverse parameter order (the
// order backward finishes them, roughly) and each sent as soon as all its gradients are final
// (autograd's leaf-ready callback), while backward goes on with the layers below: on a GPU the
// reduction overlaps the remaining backward kernels. Buckets are sent in the same order on every
// rank, so ranks whose graphs differ still match collectives. A parameter that gets no gradient
// on a rank this step contributes zeros there; its gradient stays undefined only if no rank had
// one (each bucket carries one presence count per parameter), exactly as on one rank.
//
// Which mean? ReduceOp::average suits a loss that is a mean over an equal share per rank (an MLP on
// equal shards). For token-level losses over unequal shares, normalise each rank's loss by the
// GLOBAL count (comm.all_reduce_value(local_tokens)) and use ReduceOp::sum: N ranks then compute
// exactly the gradient one rank computes on the global batch.
#pragma once

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "dist/communicator.h"

namespace kiln::dist {

struct DataParallelOptions {
  size_t bucket_bytes = size_t(4) << 20;
  ReduceOp reduce = ReduceOp::average;
  bool broadcast_parameters = true;  // make rank 0's initial values everyone's
  // Send each bucket as soon as its gradients are final (true), or all of them after backward
  // (false: no overlap; for measuring what the overlap saves).
  bool overlap = true;
};

class DataParallel {
 public:
  explicit DataParallel(std::vector<Tensor> parameters, DataParallelOptions options = {},
                        Communicator& comm = world());
  ~DataParallel();

  // kiln::backward(loss), with the gradients reduced over the ranks by the time it returns (on a
  // GPU: ordered before any later kernel). In the world of one without a launcher it is exactly
  // kiln::backward; under mpirun the buckets go through the backend even with one rank.
  void backward(const Tensor& loss);
  // The reduction alone: the gradients the parameters hold now (none counts as zeros) summed or
  // averaged over the ranks, as backward() would leave them. For a rank with no data this step,
  // or one that accumulated its gradients over several kiln::backward calls itself.
  void reduce_gradients();
  // Rank 0's parameter values to every rank (done by the constructor unless told not to).
  void broadcast_parameters();

  Communicator& communicator() const { return comm_; }
  size_t num_buckets() const { return buckets_.size(); }
  // Parameter indices of bucket b, in the order they are packed.
  const std::vector<size_t>& bucket(size_t b) const;

 private:
  struct Bucket;
  void launch_ready_buckets();
  void launch(Bucket& bucket);
  void start_reduction();
  // Sends the buckets not sent yet, waits for all, and writes the results into the gradients.
  void finish_reduction();

  std::vector<Tensor> params_;
  DataParallelOptions options_;
  Communicator& comm_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::unordered_map<TensorImpl*, size_t> bucket_of_;  // parameter -> its bucket
  size_t next_to_launch_ = 0;
};

}  // namespace kiln::dist
