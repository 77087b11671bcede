// Tensors made or changed by a kernel: filled and random factories, dtype/device conversion, and
// in-place updates. (core/tensor.h has the allocation-only `empty`, `from_vector` and the views.)
// Random factories draw from the global Philox generator (core/random.h), so the same seed gives
// the same values on the CPU and on CUDA.
#pragma once

#include "core/tensor.h"

namespace kiln {

Tensor zeros(const Shape& shape, Options options = {});
Tensor ones(const Shape& shape, Options options = {});
Tensor full(const Shape& shape, double value, Options options = {});
Tensor scalar_tensor(double value, Options options = {});  // shape []
Tensor arange(int64_t end, Options options = {});          // 0, 1, ..., end - 1
Tensor arange(double start, double end, double step, Options options = {});
Tensor uniform(const Shape& shape, double low, double high, Options options = {});
Tensor normal(const Shape& shape, double mean, double stddev, Options options = {});

// A new tensor with the same contents on `options`' device and dtype. No autograd (see ops `to`).
Tensor copy_to(const Tensor& tensor, Options options);

// In-place updates, never recorded on the tape (optimizers, gradient accumulation, init). They
// refuse a tensor that requires grad unless grad mode is off (NoGradGuard), and return `tensor`
// (a handle to the same storage) so calls can be chained.
Tensor copy_(const Tensor& tensor, const Tensor& source);  // tensor = source (converting dtype)
Tensor fill_(const Tensor& tensor, double value);
Tensor zero_(const Tensor& tensor);
Tensor add_(const Tensor& tensor, const Tensor& other,
            double alpha = 1.0);                   // tensor += alpha * other
Tensor mul_(const Tensor& tensor, double factor);  // tensor *= factor

}  // namespace kiln
