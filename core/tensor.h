// Tensor: a cheap handle to a shared TensorImpl. A tensor has a shape, a dtype, a device and
// contiguous row-major storage; views are contiguous slices along the first dimension (one time
// step of a [T, B, H] tensor is one). Everything else is an explicit copy.
//
// This file is the data structure, allocation (empty), views and host copies. Factories that run a
// kernel (zeros, uniform, ...), conversions and in-place updates are in kernels/factories.h; the
// math on tensors (add, matmul, softmax, ...) and backward() are in autograd/.
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
  Options(DType dtype_) : dtype(dtype_) {}      // NOLINT implicit
  Options(Device device_) : device(device_) {}  // NOLINT implicit
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

  // Autograd state (backward() itself is kiln::backward in autograd/node.h).
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool flag);
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& grad);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Same data, no autograd history.
  Tensor detach() const;

  TensorImpl& impl() const {
    KILN_CHECK(impl_ != nullptr, "Tensor: use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// A new tensor with uninitialised contents. Errors on a negative size or an unusable device.
Tensor empty(const Shape& shape, Options options = {});
// A new tensor holding `values` (row-major), copied from the host.
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

// A view sharing storage: rows [start, start + length) of dim 0. No autograd (see ops narrow).
Tensor view_rows(const Tensor& tensor, int64_t start, int64_t length);
// A view with another shape of the same numel. No autograd (see ops reshape).
Tensor view_as_shape(const Tensor& tensor, const Shape& shape);

// Prints values (abbreviated past a few rows) with shape, dtype and device.
std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace kiln
