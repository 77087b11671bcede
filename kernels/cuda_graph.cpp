// CudaGraph (kernels/cuda_graph.h). Compiled by nvcc in a CUDA build, so the seed cell is written
// by a kernel (a launch takes its arguments by value: no host memory has to outlive the call).
#include "kernels/cuda_graph.h"

#include "core/cuda_runtime.h"
#include "core/random.h"
#include "kernels/parallel_for.h"

namespace kiln {

namespace {
struct SetWordFunctor {
  uint64_t* cell;
  uint64_t value;
  KILN_HD void operator()(int64_t) const { *cell = value; }
};
}  // namespace

CudaGraph::CudaGraph(Device device) : device_(device) {
  KILN_CHECK(device.is_cuda(), "CudaGraph: graphs are captured on a CUDA device, got ",
             device.str());
  cuda::check_device_usable(device, "CudaGraph");
}

CudaGraph::~CudaGraph() { release(); }

AllocatorStats CudaGraph::pool_stats() const {
  return pool_ ? graph_pool_stats(*pool_) : AllocatorStats{};
}

#ifdef __CUDACC__
void CudaGraph::release() {
  if (exec_ || graph_) cudaDeviceSynchronize();  // no replay may still be reading the pool
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
  retire_graph_pool(pool_);
  pool_.reset();
}

void CudaGraph::capture(const std::function<void()>& work) {
  KILN_CHECK(!captured(), "CudaGraph::capture: this graph is captured already");
  const cudaStream_t stream = cuda::current_stream();
  KILN_CHECK(stream != nullptr,
             "CudaGraph::capture: the legacy default stream cannot be captured; open a "
             "cuda::StreamScope first");
  cuda::set_device(device_.index);
  seed_cell_ = empty({1}, {DType::i64, device_});  // ordinary memory: lives as long as the graph
  Generator& gen = default_generator();
  rng_begin_ = gen.offset();
  gen.set_seed_cell(reinterpret_cast<const uint64_t*>(seed_cell_.raw_data()));
  pool_ = begin_graph_pool(device_.index);
  cuda::set_capturing(true);
  cudaGraph_t graph = nullptr;
  KILN_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  auto finish = [&] {
    cuda::set_capturing(false);
    end_graph_pool();
    gen.set_seed_cell(nullptr);
    return cudaStreamEndCapture(stream, &graph);
  };
  try {
    work();
  } catch (...) {
    finish();
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    retire_graph_pool(pool_);
    pool_.reset();
    gen.set_offset(rng_begin_);
    throw;
  }
  KILN_CUDA_CHECK(finish());
  graph_ = graph;
  KILN_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &num_nodes_));
  cudaGraphExec_t exec = nullptr;
  KILN_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  exec_ = exec;
  rng_end_ = gen.offset();
  gen.set_offset(rng_begin_);  // the capture ran nothing: the first replay draws these numbers
}

void CudaGraph::replay() {
  KILN_CHECK(captured(), "CudaGraph::replay: nothing captured yet");
  KILN_CHECK(!cuda::is_capturing(), "CudaGraph::replay: not inside another capture");
  Generator& gen = default_generator();
  KILN_CHECK(gen.offset() == rng_begin_, "CudaGraph::replay: the random generator is at offset ",
             gen.offset(), " but the graph was captured at offset ", rng_begin_,
             "; seed it as before the capture (manual_seed) so the replay's draws are new numbers");
  parallel_for(device_, 1,
               SetWordFunctor{reinterpret_cast<uint64_t*>(seed_cell_.raw_data()), gen.seed()});
  profiler::ProfileScope scope("cuda graph replay", profiler::Category::kernel);
  KILN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda::current_stream()));
  gen.set_offset(rng_end_);
}
#else
void CudaGraph::release() {}
void CudaGraph::capture(const std::function<void()>&) {
  KILN_FAIL("CudaGraph::capture: this build of kiln has no CUDA support");
}
void CudaGraph::replay() { KILN_FAIL("CudaGraph::replay: this build of kiln has no CUDA support"); }
#endif

}  // namespace kiln
