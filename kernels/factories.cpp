// Factories that fill a new tensor with a kernel, dtype/device conversion and in-place updates.
#include "kernels/factories.h"

#include <cmath>

#include "core/cuda_runtime.h"
#include "core/grad_mode.h"
#include "core/random.h"
#include "core/tensor.h"
#include "kernels/copy.h"

namespace kiln {

namespace {
void check_inplace_allowed(const Tensor& t, const char* op) {
  KILN_CHECK(!(t.requires_grad() && GradMode::is_enabled()), op, ": in-place update of ",
             t.describe(),
             " which requires grad; wrap it in a kiln::NoGradGuard (as optimizers do)");
}
}  // namespace

Tensor full(const Shape& shape, double value, Options options) {
  Tensor t = empty(shape, options);
  kernels::fill(t, value);
  return t;
}

Tensor zeros(const Shape& shape, Options options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, Options options) { return full(shape, 1.0, options); }
Tensor scalar_tensor(double value, Options options) { return full({}, value, options); }

Tensor arange(double start, double end, double step, Options options) {
  KILN_CHECK(step != 0, "arange: step must not be zero");
  int64_t count = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor t = empty({count > 0 ? count : 0}, options);
  kernels::arange(t, start, step);
  return t;
}

Tensor arange(int64_t end, Options options) {
  return arange(0.0, static_cast<double>(end), 1.0, options);
}

Tensor uniform(const Shape& shape, double low, double high, Options options) {
  Tensor t = empty(shape, options);
  Generator& gen = default_generator();
  KILN_CHECK(!gen.seed_cell() || options.device.is_cpu(), "uniform: random draws on a device are not "
             "supported inside a captured CUDA graph (only dropout reads its seed at replay)");
  kernels::uniform(t, gen.seed(), gen.advance(t.numel()), low, high);
  return t;
}

Tensor normal(const Shape& shape, double mean, double stddev, Options options) {
  Tensor t = empty(shape, options);
  Generator& gen = default_generator();
  KILN_CHECK(!gen.seed_cell() || options.device.is_cpu(), "normal: random draws on a device are not "
             "supported inside a captured CUDA graph (only dropout reads its seed at replay)");
  kernels::normal(t, gen.seed(), gen.advance(t.numel()), mean, stddev);
  return t;
}

Tensor copy_to(const Tensor& tensor, Options options) {
  cuda::check_device_usable(options.device, "to");
  if (tensor.dtype() == options.dtype) {
    Tensor out = empty(tensor.shape(), options);
    cuda::copy_bytes(out.raw_data(), options.device, tensor.raw_data(), tensor.device(),
                     tensor.nbytes());
    return out;
  }
  // Convert on the source device, then move.
  Tensor converted = empty(tensor.shape(), {options.dtype, tensor.device()});
  kernels::cast(tensor, converted);
  return options.device == tensor.device() ? converted : copy_to(converted, options);
}

Tensor copy_(const Tensor& destination, const Tensor& source) {
  check_inplace_allowed(destination, "copy_");
  KILN_CHECK(source.shape() == destination.shape(), "copy_: source ", source.describe(),
             " does not match destination ", destination.describe());
  Tensor converted = source.dtype() == destination.dtype()
                         ? source
                         : copy_to(source, {destination.dtype(), source.device()});
  cuda::copy_bytes(destination.raw_data(), destination.device(), converted.raw_data(),
                   converted.device(), destination.nbytes());
  return destination;
}

Tensor fill_(const Tensor& tensor, double value) {
  check_inplace_allowed(tensor, "fill_");
  kernels::fill(tensor, value);
  return tensor;
}

Tensor zero_(const Tensor& tensor) { return fill_(tensor, 0.0); }

Tensor add_(const Tensor& tensor, const Tensor& other, double alpha) {
  check_inplace_allowed(tensor, "add_");
  KILN_CHECK(other.shape() == tensor.shape() && other.dtype() == tensor.dtype() &&
                 other.device() == tensor.device(),
             "add_: ", other.describe(), " cannot be added in place to ", tensor.describe(),
             " (expected the same shape, dtype, device)");
  kernels::axpy(alpha, other, tensor);
  return tensor;
}

Tensor mul_(const Tensor& tensor, double factor) {
  check_inplace_allowed(tensor, "mul_");
  kernels::scale(tensor, factor);
  return tensor;
}

}  // namespace kiln
