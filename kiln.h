// The public API in one include: tensors, ops, autograd and gradcheck.
#pragma once

#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/cuda_runtime.h"
#include "core/grad_mode.h"
#include "core/random.h"
#include "core/tensor.h"
