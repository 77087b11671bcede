#include "dist/communicator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/grad_mode.h"
#include "core/profiler.h"
#include "kernels/factories.h"

#ifdef KILN_WITH_MPI
#include <mpi.h>
#endif

namespace kiln::dist {

namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoi(value) : fallback;
}

void check_reducible(const Tensor& tensor, ReduceOp op, const char* what) {
  KILN_CHECK(tensor.defined(), "dist::", what, ": undefined tensor");
  KILN_CHECK(op == ReduceOp::sum || tensor.dtype() == DType::f32 || tensor.dtype() == DType::f64,
             "dist::", what, ": an average of ", tensor.describe(),
             " (integers are summed, not averaged)");
}

// The world of one: what a process started without a launcher gets. Every collective is the
// identity (the sum or mean over one rank), so a program written for N ranks runs unchanged.
class SelfCommunicator : public Communicator {
 public:
  bool has_backend() const override { return false; }
  std::string backends() const override { return "none (world of one)"; }
  std::unique_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) override {
    check_reducible(tensor, op, "all_reduce");
    struct Done : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(const Tensor& tensor, int root) override {
    KILN_CHECK(tensor.defined(), "dist::broadcast: undefined tensor");
    KILN_CHECK(root == 0, "dist::broadcast: root ", root, " in a world of one");
  }
  void barrier() override {}
};

#ifdef KILN_WITH_MPI

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::bf16:  // MPI has no bf16 sum; mixed precision reduces its f32 master gradients
      KILN_FAIL("dist: bf16 tensors cannot go through MPI collectives; convert to f32 first");
  }
  KILN_FAIL("dist: unknown dtype");
}

// Waits for `request` without holding a core for long (other ranks may share this machine's
// cores): MPI_Test with a yield between tries for the first 2 ms, which keeps small reductions
// fast, then with sleeps growing to 200 us. Past the timeout the job is taken down: a peer that
// died or hangs would otherwise hang every rank forever.
void wait_or_abort(MPI_Request& request, int rank, const std::string& what) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto spin_until = start + std::chrono::milliseconds(2);
  const auto deadline = start + std::chrono::duration<double>(collective_timeout());
  int done = 0;
  for (int naps = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    auto now = Clock::now();
    if (now > deadline) {
      std::fprintf(stderr,
                   "kiln: rank %d: %s did not complete within %.0f s (KILN_DIST_TIMEOUT): another "
                   "rank has died or is stuck; taking the job down\n",
                   rank, what.c_str(), collective_timeout());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (now < spin_until) {
      std::this_thread::yield();
    } else {
      naps = std::min(naps + 10, 200);
      std::this_thread::sleep_for(std::chrono::microseconds(naps));
    }
  }
}

void share_nccl_id(void* bytes, int size) { MPI_Bcast(bytes, size, MPI_BYTE, 0, MPI_COMM_WORLD); }

class MpiWork : public Work {
 public:
  MpiWork(Tensor tensor, ReduceOp op, int rank, int world_size)
      : tensor_(std::move(tensor)), op_(op), rank_(rank), world_size_(world_size) {
    MPI_Iallreduce(MPI_IN_PLACE, tensor_.raw_data(), static_cast<int>(tensor_.numel()),
                   mpi_type(tensor_.dtype()), MPI_SUM, MPI_COMM_WORLD, &request_);
  }
  ~MpiWork() override {
    if (!waited_) wait_or_abort(request_, rank_, "an all_reduce dropped before wait()");
  }
  void poke() override {
    int done = 0;
    if (!waited_) MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
  }
  void wait() override {
    if (waited_) return;
    profiler::ProfileScope scope("all_reduce wait (MPI)", profiler::Category::sync);
    wait_or_abort(request_, rank_, "all_reduce of " + tensor_.describe());
    waited_ = true;
    detail::divide_if_average(tensor_, op_, world_size_);
  }

 private:
  Tensor tensor_;
  ReduceOp op_;
  int rank_, world_size_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool waited_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    int provided = 0;
    // FUNNELED: only the thread that called init makes MPI calls (kiln's OpenMP workers never do).
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
  ~MpiCommunicator() override {
    nccl_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  bool has_backend() const override { return true; }
  std::string backends() const override { return nccl_ ? "MPI + NCCL" : "MPI"; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& tensor, ReduceOp op) override {
    check_reducible(tensor, op, "all_reduce");
    if (!tensor.device().is_cpu()) return nccl(tensor).all_reduce_async(tensor, op);
    return std::make_unique<MpiWork>(tensor, op, rank_, world_size_);
  }
  void broadcast(const Tensor& tensor, int root) override {
    KILN_CHECK(tensor.defined(), "dist::broadcast: undefined tensor");
    KILN_CHECK(root >= 0 && root < world_size_, "dist::broadcast: root ", root,
               " is not a rank of ", world_size_);
    if (!tensor.device().is_cpu()) return nccl(tensor).broadcast(tensor, root);
    MPI_Request request;
    MPI_Ibcast(tensor.raw_data(), static_cast<int>(tensor.numel()), mpi_type(tensor.dtype()), root,
               MPI_COMM_WORLD, &request);
    wait_or_abort(request, rank_, "broadcast of " + tensor.describe());
  }
  void barrier() override {
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    wait_or_abort(request, rank_, "barrier");
  }

 private:
  // NCCL is set up on first use: a CPU-only job never touches CUDA. Every rank must reach its
  // first device collective together (as with any collective), so the id broadcast matches.
  detail::NcclBackend& nccl(const Tensor& tensor) {
    if (!nccl_) nccl_ = detail::make_nccl_backend(rank_, world_size_, local_rank_, share_nccl_id);
    KILN_CHECK(nccl_ != nullptr, "dist: ", tensor.describe(),
               " is on a GPU, but this kiln was built without NCCL (collectives of device tensors "
               "need it)");
    return *nccl_;
  }
  std::unique_ptr<detail::NcclBackend> nccl_;
};

#endif  // KILN_WITH_MPI

}  // namespace

void detail::divide_if_average(const Tensor& tensor, ReduceOp op, int world_size) {
  if (op != ReduceOp::average || world_size == 1) return;
  NoGradGuard no_grad;
  mul_(tensor, 1.0 / world_size);
}

#ifndef KILN_WITH_NCCL
std::unique_ptr<detail::NcclBackend> detail::make_nccl_backend(int, int, int,
                                                               void (*)(void*, int)) {
  return nullptr;
}
#endif

int launched_world_size() {
  int size = env_int("OMPI_COMM_WORLD_SIZE", 0);
  if (size == 0) size = env_int("PMI_SIZE", 0);
  if (size == 0 && std::getenv("PMIX_RANK")) size = 1;  // PMIx alone gives no size; MPI will
  return size;
}

double collective_timeout() {
  static const double seconds = [] {
    const char* value = std::getenv("KILN_DIST_TIMEOUT");
    if (!value || !*value) return 300.0;
    char* end = nullptr;
    double parsed = std::strtod(value, &end);
    KILN_CHECK(end != value && *end == '\0' && parsed > 0, "KILN_DIST_TIMEOUT='", value,
               "': expected a number of seconds > 0");
    return parsed;
  }();
  return seconds;
}

Communicator& world() {
  static std::unique_ptr<Communicator> instance = []() -> std::unique_ptr<Communicator> {
    const int launched = launched_world_size();
    if (launched == 0) return std::make_unique<SelfCommunicator>();
#ifdef KILN_WITH_MPI
    return std::make_unique<MpiCommunicator>();
#else
    if (launched == 1) return std::make_unique<SelfCommunicator>();
    KILN_FAIL(
        "dist: this process was started by an MPI launcher with several ranks, but this kiln "
        "was built without MPI (install libopenmpi-dev and rebuild)");
#endif
  }();
  return *instance;
}

void Communicator::all_reduce(const Tensor& tensor, ReduceOp op) {
  all_reduce_async(tensor, op)->wait();
}

void Communicator::all_reduce(const std::vector<Tensor>& tensors, ReduceOp op) {
  for (const Tensor& tensor : tensors) all_reduce(tensor, op);
}

void Communicator::broadcast(const std::vector<Tensor>& tensors, int root) {
  for (const Tensor& tensor : tensors) broadcast(tensor, root);
}

double Communicator::all_reduce_value(double value, ReduceOp op) {
  if (!has_backend()) return value;
  Tensor t = from_vector<double>({value}, {1});
  all_reduce(t, op);
  return t.to_vector<double>()[0];
}

}  // namespace kiln::dist
