// The processes of one training job, and the collectives between them (DESIGN.md, "Growing past
// one device"). One process per device, started by `mpirun -np N`; each process calls world() and
// learns its rank. Host tensors travel through MPI (Debian's OpenMPI), CUDA tensors through NCCL,
// whose unique id rank 0 makes and broadcasts over MPI. A process started without a launcher is
// a world of one: every collective returns at once and nothing is initialised.
//
// Collectives are in place and must be called by every rank in the same order with tensors of
// the same shapes and dtypes (MPI's and NCCL's rule). A collective that does not complete within
// KILN_DIST_TIMEOUT seconds (default 300) means another rank died or is stuck: the job is taken
// down with a message naming the rank and the collective, instead of hanging.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor.h"

namespace kiln::dist {

enum class ReduceOp { sum, average };

// A collective in flight (all_reduce_async). wait() returns when `tensor` holds the result: on the
// host, after the transfer; on CUDA, once the current stream is ordered after it (no host wait).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  // Non-blocking: lets MPI progress the transfer while the caller computes (a no-op for NCCL).
  virtual void poke() {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // The rank among the processes on this node: the CUDA device this process uses.
  int local_rank() const { return local_rank_; }
  bool is_distributed() const { return world_size_ > 1; }
  // False for the world of one without a launcher, whose collectives do nothing. Under mpirun,
  // even with one rank, collectives really run (so NCCL can be measured on a one-GPU machine).
  virtual bool has_backend() const = 0;
  // "MPI", "MPI + NCCL" or "none (world of one)".
  virtual std::string backends() const = 0;

  // In place: every rank's `tensor` becomes the sum (or mean) over the ranks. f32, f64, i32, i64.
  void all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum);
  void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op = ReduceOp::sum);
  // Starts the reduction and returns at once; `tensor` must stay alive and unchanged until wait().
  virtual std::unique_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) = 0;
  // In place: every rank's tensors become rank `root`'s.
  virtual void broadcast(const Tensor& tensor, int root = 0) = 0;
  void broadcast(const std::vector<Tensor>& tensors, int root = 0);
  virtual void barrier() = 0;
  // A host number summed (or averaged) over the ranks: token counts, losses for a log line.
  double all_reduce_value(double value, ReduceOp op = ReduceOp::sum);

 protected:
  int rank_ = 0, world_size_ = 1, local_rank_ = 0;
};

// This process's communicator, initialised on the first call: MPI when the process was started by
// an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), a world of one
// otherwise. A kiln built without MPI started by mpirun with N > 1 is a clear error (with N = 1,
// the world of one).
Communicator& world();

// The number of ranks an MPI launcher says this process belongs to; 0 without a launcher.
int launched_world_size();

// Seconds a collective may take before the job is taken down (KILN_DIST_TIMEOUT; > 0).
double collective_timeout();

namespace detail {
// After a sum over the ranks: divides `tensor` by world_size in place when `op` is average.
void divide_if_average(const Tensor& tensor, ReduceOp op, int world_size);

// The NCCL half of the MPI communicator (dist/nccl.cpp, CUDA builds): reductions and broadcasts
// of device tensors on a stream of its own, ordered after the current stream's work.
class NcclBackend {
 public:
  virtual ~NcclBackend() = default;
  virtual std::unique_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) = 0;
  virtual void broadcast(const Tensor& tensor, int root) = 0;
};
// Makes the backend for this rank's device; `share_id` broadcasts rank 0's id bytes to all ranks.
// nullptr in a build without NCCL.
std::unique_ptr<NcclBackend> make_nccl_backend(int rank, int world_size, int local_rank,
                                               void (*share_id)(void* bytes, int size));
}  // namespace detail

}  // namespace kiln::dist
