// KILN_HD marks a function that both the host compiler and nvcc compile, for the CPU and for the
// GPU: the functors of kernels/ and the Philox generator of core/random.h. KILN_DEVICE marks
// device-only helpers. In a file the host compiler builds both are empty.
#pragma once

#ifdef __CUDACC__
#define KILN_HD __host__ __device__
#define KILN_DEVICE __device__
#else
#define KILN_HD
#define KILN_DEVICE
#endif
