// Tensor: a cheap handle to a shared TensorImpl. A tensor has a shape, a dtype, a device and
// contiguous row-major storage; views are contiguous slices along the first dimension (one time
// step of a [T, B, H] tensor is one). Everything else is an explicit copy.
//
// The math on tensors (add, matmul, softmax, ...) lives in autograd/ops.h; this file is the data
// structure, its factories and the few methods every tensor needs.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace kiln {

namespace autograd {
struct Node;
}

// Owns one allocation on one device.
struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t bytes = 0;
  Device device;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset_bytes = 0;  // start of this tensor inside storage (views along dim 0)
  Shape shape;
  DType dtype = DType::f32;

  // Autograd state: a leaf that requires grad accumulates into `grad`; a computed tensor points
  // at the node that made it and at which of that node's outputs it is.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  int output_nr = 0;
};

// dtype and device for a factory: zeros({2, 3}, {DType::f64, Device::cuda()}).
struct Options {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  Options() = default;
  Options(DType dtype_) : dtype(dtype_) {}                                  // NOLINT implicit
  Options(Device device_) : device(device_) {}                              // NOLINT implicit
  Options(DType dtype_, Device device_) : dtype(dtype_), device(device_) {}
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  Options options() const { return {dtype(), device()}; }
  std::string describe() const;  // "f32[2, 3] on cpu", for error messages

  void* raw_data() const;
  // Typed pointer to the first element; checks that T matches the dtype.
  template <class T> T* data() const {
    KILN_CHECK(dtype_of<T>::value == dtype(), "Tensor::data<", dtype_name(dtype_of<T>::value),
               ">: tensor is ", describe());
    return static_cast<T*>(raw_data());
  }

  // Host copies of the contents (any device).
  template <class T> std::vector<T> to_vector() const;
  double item() const;  // the single element as double; error unless numel() == 1

  // Autograd. backward() is defined in autograd/engine.cpp.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool flag);
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& grad);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  // Same data, no autograd history.
  Tensor detach() const;

  // In-place updates, never recorded on the tape (optimizers, gradient accumulation). They refuse
  // a tensor that requires grad unless grad mode is off (NoGradGuard).
  Tensor& copy_(const Tensor& source);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other
  Tensor& mul_(double factor);

  TensorImpl& impl() const {
    KILN_CHECK(impl_ != nullptr, "Tensor: use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Factories. Random ones draw from the global Philox generator (core/random.h).
Tensor empty(const Shape& shape, Options options = {});
Tensor zeros(const Shape& shape, Options options = {});
Tensor ones(const Shape& shape, Options options = {});
Tensor full(const Shape& shape, double value, Options options = {});
Tensor arange(int64_t end, Options options = {});
Tensor arange(double start, double end, double step, Options options = {});
template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
Tensor scalar_tensor(double value, Options options = {});
Tensor uniform(const Shape& shape, double low, double high, Options options = {});
Tensor normal(const Shape& shape, double mean, double stddev, Options options = {});

// A view sharing storage: rows [start, start + length) of dim 0. No autograd (see ops narrow).
Tensor view_rows(const Tensor& tensor, int64_t start, int64_t length);
// A view with another shape of the same numel. No autograd (see ops reshape).
Tensor view_as_shape(const Tensor& tensor, const Shape& shape);
// A new tensor with the same contents on `options`' device and dtype. No autograd (see ops to).
Tensor copy_to(const Tensor& tensor, Options options);

// Prints values (abbreviated past a few rows) with shape, dtype and device.
std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace kiln
