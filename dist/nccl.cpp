// The NCCL half of the communicator: collectives of CUDA tensors, one process per device.
//
// kiln's kernels run on the legacy default stream. A reduction runs on a stream of NCCL's own
// (non-blocking, so it does not serialise with the default stream): an event recorded on the
// default stream when the bucket is filled orders the reduction after the kernels that made it,
// and wait() makes the default stream wait for the reduction's event. Neither waits on the host,
// so the reduction of one bucket overlaps the backward kernels that follow (dist/data_parallel.h).
#include <nccl.h>

#include <string>

#include "core/cuda_check.h"
#include "core/error.h"
#include "core/grad_mode.h"
#include "core/profiler.h"
#include "dist/communicator.h"
#include "kernels/factories.h"

#define KILN_NCCL_CHECK(expr)                                                                   \
  do {                                                                                          \
    ncclResult_t kiln_nccl_ = (expr);                                                           \
    if (kiln_nccl_ != ncclSuccess)                                                              \
      KILN_FAIL("NCCL error ", ncclGetErrorString(kiln_nccl_), " in ", #expr, " at ", __FILE__, \
                ":", __LINE__);                                                                 \
  } while (0)

namespace kiln::dist::detail {

namespace {

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::bf16: return ncclBfloat16;
  }
  KILN_FAIL("dist: unknown dtype");
}

class NcclWork : public Work {
 public:
  NcclWork(Tensor tensor, ReduceOp op, int world_size, cudaEvent_t done)
      : tensor_(std::move(tensor)), op_(op), world_size_(world_size), done_(done) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override {
    if (waited_) return;
    profiler::ProfileScope scope("all_reduce wait (NCCL)", profiler::Category::sync);
    KILN_CUDA_CHECK(cudaStreamWaitEvent(0, done_, 0));
    waited_ = true;
    divide_if_average(tensor_, op_, world_size_);
  }

 private:
  Tensor tensor_;
  ReduceOp op_;
  int world_size_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class Nccl : public NcclBackend {
 public:
  Nccl(int rank, int world_size, int local_rank, void (*share_id)(void*, int))
      : world_size_(world_size) {
    int devices = 0;
    KILN_CUDA_CHECK(cudaGetDeviceCount(&devices));
    KILN_CHECK(local_rank < devices, "dist: local rank ", local_rank, " needs GPU ", local_rank,
               " but this node has ", devices, " (start one process per GPU)");
    KILN_CUDA_CHECK(cudaSetDevice(local_rank));
    ncclUniqueId id;
    if (rank == 0) KILN_NCCL_CHECK(ncclGetUniqueId(&id));
    share_id(&id, sizeof(id));
    KILN_NCCL_CHECK(ncclCommInitRank(&comm_, world_size, id, rank));
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~Nccl() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::unique_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) override {
    profiler::ProfileScope scope("all_reduce launch (NCCL)", profiler::Category::kernel);
    order_after_default_stream();
    KILN_NCCL_CHECK(ncclAllReduce(tensor.raw_data(), tensor.raw_data(),
                                  static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                  ncclSum, comm_, stream_));
    cudaEvent_t done;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    KILN_CUDA_CHECK(cudaEventRecord(done, stream_));
    return std::make_unique<NcclWork>(tensor, op, world_size_, done);
  }

  void broadcast(const Tensor& tensor, int root) override {
    order_after_default_stream();
    KILN_NCCL_CHECK(ncclBroadcast(tensor.raw_data(), tensor.raw_data(),
                                  static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                                  root, comm_, stream_));
    KILN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  void order_after_default_stream() {
    cudaEvent_t ready;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    KILN_CUDA_CHECK(cudaEventRecord(ready, 0));
    KILN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    KILN_CUDA_CHECK(cudaEventDestroy(ready));  // released once the wait is done
  }

  int world_size_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<NcclBackend> make_nccl_backend(int rank, int world_size, int local_rank,
                                               void (*share_id)(void* bytes, int size)) {
  return std::make_unique<Nccl>(rank, world_size, local_rank, share_id);
}

}  // namespace kiln::dist::detail
