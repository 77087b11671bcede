// Tensor's data-structure half: storage, allocation, views, host copies, printing. Factories and
// in-place updates that launch kernels are in kernels/factories.cpp.
#include "core/tensor.h"

#include <iomanip>
#include <ostream>

#include "core/allocator.h"
#include "core/cuda_runtime.h"
#include "core/profiler.h"

namespace kiln {

Storage::Storage(size_t bytes_, Device device_) : bytes(bytes_), device(device_) {
  data = allocate_bytes(bytes, device);
}

Storage::~Storage() { free_bytes(data, device); }

int64_t Tensor::size(int64_t dim) const {
  return shape()[normalize_dim(dim, this->dim(), "Tensor::size")];
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return detail::concat(dtype_name(dtype()), shape_str(shape()), " on ", device().str());
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data) + impl().offset_bytes;
}

template <class T> std::vector<T> Tensor::to_vector() const {
  KILN_CHECK(dtype_of<T>::value == dtype(), "Tensor::to_vector<", dtype_name(dtype_of<T>::value),
             ">: tensor is ", describe());
  // A host read: on CUDA it waits for every launch before it (counted on the CPU too, where it
  // tells how many syncs a step would make on a GPU).
  profiler::ProfileScope scope("Tensor::to_vector", profiler::Category::sync);
  std::vector<T> host(numel());
  cuda::copy_bytes(host.data(), Device::cpu(), raw_data(), device(), nbytes());
  return host;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

double Tensor::item() const {
  KILN_CHECK(numel() == 1, "Tensor::item: expected a tensor with one element, got ", describe());
  profiler::ProfileScope scope("Tensor::item", profiler::Category::sync);
  switch (dtype()) {
    case DType::f32: return to_vector<float>()[0];
    case DType::f64: return to_vector<double>()[0];
    case DType::i32: return to_vector<int32_t>()[0];
    case DType::i64: return static_cast<double>(to_vector<int64_t>()[0]);
    case DType::bf16: return to_vector<bf16>()[0];
  }
  return 0;
}

Tensor& Tensor::set_requires_grad(bool flag) {
  KILN_CHECK(!flag || is_floating(dtype()),
             "set_requires_grad: only floating tensors can require grad, got ", describe());
  KILN_CHECK(flag || is_leaf(), "set_requires_grad(false): tensor ", describe(),
             " was computed by an op; use detach() to cut it from the graph");
  impl().requires_grad = flag;
  return *this;
}

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined()) {
    KILN_CHECK(grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device(),
               "set_grad: gradient ", grad.describe(), " does not match tensor ", describe());
  }
  impl().grad = grad.impl_ptr();
}

Tensor Tensor::detach() const {
  auto detached = std::make_shared<TensorImpl>();
  detached->storage = impl().storage;
  detached->offset_bytes = impl().offset_bytes;
  detached->shape = impl().shape;
  detached->dtype = impl().dtype;
  return Tensor(detached);
}

Tensor empty(const Shape& shape, Options options) {
  for (int64_t size : shape) {
    KILN_CHECK(size >= 0, "empty: negative size in shape ", shape_str(shape));
  }
  cuda::check_device_usable(options.device, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(
      static_cast<size_t>(shape_numel(shape)) * dtype_size(options.dtype), options.device);
  impl->shape = shape;
  impl->dtype = options.dtype;
  return Tensor(impl);
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  KILN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
             "from_vector: ", values.size(), " values do not fill shape ", shape_str(shape), " (",
             shape_numel(shape), " elements)");
  Tensor t = empty(shape, {dtype_of<T>::value, device});
  cuda::copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), t.nbytes());
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector<bf16>(const std::vector<bf16>&, const Shape&, Device);

Tensor view_rows(const Tensor& tensor, int64_t start, int64_t length) {
  KILN_CHECK(tensor.dim() >= 1, "narrow: expected a tensor of rank >= 1, got ", tensor.describe());
  int64_t rows = tensor.size(0);
  KILN_CHECK(start >= 0 && length >= 0 && start + length <= rows, "narrow: rows [", start, ", ",
             start + length, ") are out of range for ", tensor.describe(), " (dim 0 has ", rows,
             ")");
  Tensor view = tensor.detach();
  view.impl().shape[0] = length;
  view.impl().offset_bytes += static_cast<size_t>(start) * (tensor.nbytes() / (rows ? rows : 1));
  return view;
}

Tensor view_as_shape(const Tensor& tensor, const Shape& shape) {
  KILN_CHECK(shape_numel(shape) == tensor.numel(), "reshape: cannot view ", tensor.describe(),
             " as ", shape_str(shape), " (", tensor.numel(), " elements vs ", shape_numel(shape),
             ")");
  Tensor view = tensor.detach();
  view.impl().shape = shape;
  return view;
}

namespace {

template <class T>
void print_values(std::ostream& out, const std::vector<T>& values, const Shape& shape) {
  constexpr int64_t kEdge = 3;  // elements shown at each end of a long dim
  // Recursive over dims; depth is the rank (<= 8), not the data size.
  auto print_dim = [&](auto&& self, size_t dim, int64_t offset, int64_t stride) -> void {
    if (dim == shape.size()) {
      out << values[offset];
      return;
    }
    int64_t size = shape[dim], inner = stride / (size ? size : 1);
    out << "[";
    for (int64_t i = 0; i < size; ++i) {
      if (size > 2 * kEdge && i == kEdge) {
        out << "...";
        i = size - kEdge - 1;
        if (dim + 1 < shape.size())
          out << ",\n" << std::string(dim + 1, ' ');
        else
          out << ", ";
        continue;
      }
      self(self, dim + 1, offset + i * inner, inner);
      if (i + 1 < size) {
        if (dim + 1 < shape.size())
          out << ",\n" << std::string(dim + 1, ' ');
        else
          out << ", ";
      }
    }
    out << "]";
  };
  print_dim(print_dim, 0, 0, shape_numel(shape));
}

}  // namespace

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) {
  if (!tensor.defined()) return out << "tensor(undefined)";
  out << "tensor(";
  std::ios_base::fmtflags flags = out.flags();
  out << std::setprecision(6);
  switch (tensor.dtype()) {
    case DType::f32: print_values(out, tensor.to_vector<float>(), tensor.shape()); break;
    case DType::f64: print_values(out, tensor.to_vector<double>(), tensor.shape()); break;
    case DType::i32: print_values(out, tensor.to_vector<int32_t>(), tensor.shape()); break;
    case DType::i64: print_values(out, tensor.to_vector<int64_t>(), tensor.shape()); break;
    case DType::bf16: {  // printed as the f32 values they are exactly
      std::vector<bf16> raw = tensor.to_vector<bf16>();
      print_values(out, std::vector<float>(raw.begin(), raw.end()), tensor.shape());
      break;
    }
  }
  out.flags(flags);
  return out << ", shape=" << shape_str(tensor.shape()) << ", dtype=" << dtype_name(tensor.dtype())
             << ", device=" << tensor.device().str()
             << (tensor.requires_grad() ? ", requires_grad" : "") << ")";
}

}  // namespace kiln
