// The parts of core/tensor.h that launch kernels: factories, device/dtype copies, in-place updates.
#include <cmath>

#include "core/grad_mode.h"
#include "core/cuda_runtime.h"
#include "core/random.h"
#include "core/tensor.h"
#include "kernels/copy.h"

namespace kiln {

namespace {
void check_device_usable(Device device, const char* op) {
  if (device.is_cpu()) return;
  KILN_CHECK(cuda::is_compiled(), op, ": ", device.str(), " requested but this build of kiln has no CUDA support");
  KILN_CHECK(device.index < cuda::device_count(), op, ": ", device.str(), " requested but ", cuda::device_count(),
             " CUDA devices are visible");
}

void check_inplace_allowed(const Tensor& t, const char* op) {
  KILN_CHECK(!(t.requires_grad() && autograd::GradMode::is_enabled()), op, ": in-place update of ", t.describe(),
             " which requires grad; wrap it in a kiln::NoGradGuard (as optimizers do)");
}
}  // namespace

Tensor empty(const Shape& shape, Options options) {
  for (int64_t size : shape) {
    KILN_CHECK(size >= 0, "empty: negative size in shape ", shape_str(shape));
  }
  check_device_usable(options.device, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(options.dtype),
                                            options.device);
  impl->shape = shape;
  impl->dtype = options.dtype;
  return Tensor(impl);
}

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

Tensor arange(int64_t end, Options options) { return arange(0.0, static_cast<double>(end), 1.0, options); }

template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  KILN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values do not fill shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor t = empty(shape, {dtype_of<T>::value, device});
  cuda::copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), t.nbytes());
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);

Tensor uniform(const Shape& shape, double low, double high, Options options) {
  Tensor t = empty(shape, options);
  Generator& gen = default_generator();
  kernels::uniform(t, gen.seed(), gen.advance(t.numel()), low, high);
  return t;
}

Tensor normal(const Shape& shape, double mean, double stddev, Options options) {
  Tensor t = empty(shape, options);
  Generator& gen = default_generator();
  kernels::normal(t, gen.seed(), gen.advance(t.numel()), mean, stddev);
  return t;
}

Tensor copy_to(const Tensor& tensor, Options options) {
  check_device_usable(options.device, "to");
  if (tensor.dtype() == options.dtype) {
    Tensor out = empty(tensor.shape(), options);
    cuda::copy_bytes(out.raw_data(), options.device, tensor.raw_data(), tensor.device(), tensor.nbytes());
    return out;
  }
  // Convert on the source device, then move.
  Tensor converted = empty(tensor.shape(), {options.dtype, tensor.device()});
  kernels::cast(tensor, converted);
  return options.device == tensor.device() ? converted : copy_to(converted, options);
}

Tensor& Tensor::copy_(const Tensor& source) {
  check_inplace_allowed(*this, "copy_");
  KILN_CHECK(source.shape() == shape(), "copy_: source ", source.describe(), " does not match destination ",
             describe());
  Tensor converted = source.dtype() == dtype() ? source : copy_to(source, {dtype(), source.device()});
  cuda::copy_bytes(raw_data(), device(), converted.raw_data(), converted.device(), nbytes());
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_inplace_allowed(*this, "fill_");
  kernels::fill(*this, value);
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace_allowed(*this, "add_");
  KILN_CHECK(other.shape() == shape() && other.dtype() == dtype() && other.device() == device(), "add_: ",
             other.describe(), " cannot be added in place to ", describe(), " (expected the same shape, dtype, device)");
  kernels::axpy(alpha, other, *this);
  return *this;
}

Tensor& Tensor::mul_(double factor) {
  check_inplace_allowed(*this, "mul_");
  kernels::scale(*this, factor);
  return *this;
}

}  // namespace kiln
