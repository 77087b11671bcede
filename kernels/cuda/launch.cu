// Device facts the CUDA launchers size their grids with.
#include "core/cuda_check.h"
#include "kernels/parallel_for.h"

namespace kiln {

int cuda_sm_count() {
  static const int count = [] {
    int device = 0, sms = 0;
    KILN_CUDA_CHECK(cudaGetDevice(&device));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  }();
  return count;
}

}  // namespace kiln
