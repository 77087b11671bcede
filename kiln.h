// The framework in one include: tensors and devices (core), factories and in-place updates
// (kernels/factories.h), the profiler, ops, backward and gradcheck (autograd), the nn layers,
// losses and optimizers, and the communicator and data parallelism (dist). Built as the `kiln`
// CMake target (kiln::kiln when installed).
#pragma once

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/cuda_runtime.h"
#include "core/autocast.h"
#include "core/grad_mode.h"
#include "core/profiler.h"
#include "core/random.h"
#include "core/tensor.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "kernels/cuda_graph.h"
#include "kernels/factories.h"
#include "kernels/threads.h"
#include "nn/nn.h"
