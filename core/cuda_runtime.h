// The little of the CUDA runtime the core needs, behind functions that also exist in a build
// without CUDA (where no device is ever available).
#pragma once

#include <cstddef>

#include "core/device.h"

namespace kiln::cuda {

bool is_compiled();   // this build has CUDA code in it
bool is_available();  // and at least one device is visible
int device_count();
void set_device(int index);
void synchronize();
// Errors unless this build and machine can use `device`; `op` names the caller in the message.
void check_device_usable(Device device, const char* op);
// Copies `bytes` between any two devices (blocking).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

}  // namespace kiln::cuda
