// The little of the CUDA runtime the core needs, behind functions that also exist in a build
// without CUDA (where no device is ever available).
#pragma once

#include <cstddef>

#include "core/device.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; named here so builds without CUDA compile

namespace kiln::cuda {

using Stream = CUstream_st*;

bool is_compiled();   // this build has CUDA code in it
bool is_available();  // and at least one device is visible
int device_count();
void set_device(int index);
void synchronize();
// Errors unless this build and machine can use `device`; `op` names the caller in the message.
void check_device_usable(Device device, const char* op);
// Copies `bytes` between any two devices. A copy to the host blocks until it is done; a copy from
// the host returns once the source may be reused (CUDA stages pageable memory). While a CUDA graph
// is being captured a copy to the host is an error (nothing can be read back inside a graph), and
// so is a copy from the host (it would be replayed with the values of the capture).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// The stream kiln's CUDA work on this thread goes to: every kernel launch, cuBLAS call and copy.
// Null (the default) is CUDA's legacy default stream. A CUDA graph is captured from a stream of
// kiln's own (StreamScope), since the legacy stream cannot be captured.
Stream current_stream();
// Makes kiln's CUDA work on this thread go to a new stream of its own while the scope lives; the
// stream waits for the work queued before it, and the scope's end waits for the stream's work.
class StreamScope {
 public:
  StreamScope();
  ~StreamScope();
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;
  Stream stream() const { return stream_; }

 private:
  Stream stream_ = nullptr;
  Stream previous_ = nullptr;
};

// Whether this thread is capturing a CUDA graph (kernels/cuda_graph.h sets it). Code that would
// read device values on the host or upload host values checks it with check_not_capturing, whose
// error names `what`.
bool is_capturing();
void set_capturing(bool capturing);
void check_not_capturing(const char* what);

}  // namespace kiln::cuda
