#include "core/cuda_runtime.h"

#include <cstring>

#include "core/error.h"
#include "core/profiler.h"

#ifdef KILN_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace kiln::cuda {

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
  KILN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}
#else
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
