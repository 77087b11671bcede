// KILN_CUDA_CHECK / KILN_CUBLAS_CHECK: every CUDA runtime and cuBLAS call is checked and a failure
// becomes a kiln::Error naming the call and where it was made.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define KILN_CUDA_CHECK(expr)                                                                    \
  do {                                                                                           \
    cudaError_t kiln_err_ = (expr);                                                              \
    if (kiln_err_ != cudaSuccess)                                                                \
      KILN_FAIL("CUDA error ", cudaGetErrorName(kiln_err_), " (", cudaGetErrorString(kiln_err_), \
                ") in ", #expr, " at ", __FILE__, ":", __LINE__);                                \
  } while (0)
