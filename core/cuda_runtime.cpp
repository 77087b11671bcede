#include "core/cuda_runtime.h"

#include <cstring>

#include "core/error.h"
#include "core/profiler.h"

#ifdef KILN_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace kiln::cuda {

namespace {
thread_local Stream current = nullptr;
thread_local bool capturing = false;
}  // namespace

Stream current_stream() { return current; }
bool is_capturing() { return capturing; }
void set_capturing(bool value) { capturing = value; }
void check_not_capturing(const char* what) {
  KILN_CHECK(!capturing, what,
             " during CUDA graph capture: a captured step may not read device values on the host "
             "or upload host values (a replay would repeat the values of the capture)");
}

#ifdef KILN_WITH_CUDA
bool is_compiled() { return true; }

int device_count() {
  static const int count = [] {
    int n = 0;
    // No driver or no device is not an error here: it simply means zero devices.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

void set_device(int index) {
  KILN_CHECK(index >= 0 && index < device_count(), "cuda::set_device: device cuda:", index,
             " does not exist (", device_count(), " visible)");
  KILN_CUDA_CHECK(cudaSetDevice(index));
}

void synchronize() {
  if (!is_available()) return;
  check_not_capturing("cuda::synchronize");
  profiler::ProfileScope scope("cuda synchronize", profiler::Category::sync);
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cudaMemcpyKind kind = dst_device.is_cpu()   ? cudaMemcpyDeviceToHost
                        : src_device.is_cpu() ? cudaMemcpyHostToDevice
                                              : cudaMemcpyDeviceToDevice;
  // cudaMemcpy blocks the host until the copy (and the work queued before it) is done; a copy to
  // the host is the sync that matters in a training step.
  profiler::ProfileScope scope(
      kind == cudaMemcpyDeviceToHost   ? "copy device->host"
      : kind == cudaMemcpyHostToDevice ? "copy host->device"
                                       : "copy device->device",
      kind == cudaMemcpyDeviceToHost ? profiler::Category::sync : profiler::Category::copy);
  if (kind == cudaMemcpyDeviceToHost) check_not_capturing("copy device->host");
  if (kind == cudaMemcpyHostToDevice) check_not_capturing("copy host->device");
  if (!current) {
    KILN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
    return;
  }
  // On kiln's own stream the copy is queued behind that stream's work. A copy from pageable host
  // memory is staged before cudaMemcpyAsync returns; one to the host is waited for.
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, current));
  if (kind == cudaMemcpyDeviceToHost) KILN_CUDA_CHECK(cudaStreamSynchronize(current));
}

StreamScope::StreamScope() : previous_(current) {
  KILN_CHECK(is_available(), "cuda::StreamScope: no CUDA device is visible");
  // A blocking stream: work on the legacy default stream (from code outside kiln) stays ordered
  // with it, and such work during a capture fails loudly instead of racing.
  KILN_CUDA_CHECK(cudaStreamCreate(&stream_));
  current = stream_;
}

StreamScope::~StreamScope() {
  cudaStreamSynchronize(stream_);  // no throwing from a destructor: a failure here surfaces later
  cudaStreamDestroy(stream_);
  current = previous_;
}
#else
StreamScope::StreamScope() {
  KILN_FAIL("cuda::StreamScope: this build of kiln has no CUDA support");
}
StreamScope::~StreamScope() = default;
bool is_compiled() { return false; }
int device_count() { return 0; }
void set_device(int index) {
  KILN_FAIL("cuda::set_device(", index, "): this build of kiln has no CUDA support");
}
void synchronize() {}
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  KILN_CHECK(dst_device.is_cpu() && src_device.is_cpu(),
             "copy: this build of kiln has no CUDA support, cannot copy ", src_device.str(), " -> ",
             dst_device.str());
  if (bytes) std::memcpy(dst, src, bytes);
}
#endif

bool is_available() { return device_count() > 0; }

void check_device_usable(Device device, const char* op) {
  if (device.is_cpu()) return;
  KILN_CHECK(is_compiled(), op, ": ", device.str(),
             " requested but this build of kiln has no CUDA support");
  KILN_CHECK(device.index < device_count(), op, ": ", device.str(), " requested but ",
             device_count(), " CUDA devices are visible");
}

}  // namespace kiln::cuda
