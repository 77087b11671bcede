#include "cudnn_rnn.h"

#include <cudnn.h>

#include <cmath>
#include <vector>

#include "core/cuda_check.h"
#include "kiln.h"

#define CUDNN_CHECK(expr)                                                     \
  do {                                                                        \
    cudnnStatus_t status_ = (expr);                                           \
    if (status_ != CUDNN_STATUS_SUCCESS)                                      \
      KILN_FAIL("cuDNN error ", cudnnGetErrorString(status_), " in ", #expr); \
  } while (0)

namespace kiln::bench {

struct CudnnRnn::State {
  cudnnHandle_t handle = nullptr;
  cudnnRNNDescriptor_t rnn = nullptr;
  cudnnDropoutDescriptor_t dropout = nullptr;
  cudnnRNNDataDescriptor_t x_desc = nullptr, y_desc = nullptr;
  cudnnTensorDescriptor_t h_desc = nullptr;
  Tensor x, y, dx, dy, h, c, dh, dc, weights, dweights, work, reserve, seq_lengths;
  size_t weight_bytes = 0, work_bytes = 0, reserve_bytes = 0;
};

CudnnRnn::CudnnRnn(bool lstm, int64_t steps, int64_t batch, int64_t input, int64_t hidden,
                   bool bf16)
    : s_(new State) {
  Device gpu = Device::cuda();
  const cudnnDataType_t data = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  const DType dtype = bf16 ? DType::bf16 : DType::f32;
  // Random values are drawn in f32 and rounded (kiln's random fills are f32/f64 only).
  auto random = [&](Shape shape, double bound) {
    return to(uniform(shape, -bound, bound, gpu), dtype);
  };
  CUDNN_CHECK(cudnnCreate(&s_->handle));
  CUDNN_CHECK(cudnnCreateDropoutDescriptor(&s_->dropout));
  CUDNN_CHECK(cudnnSetDropoutDescriptor(s_->dropout, s_->handle, 0.0f, nullptr, 0, 0));
  CUDNN_CHECK(cudnnCreateRNNDescriptor(&s_->rnn));
  CUDNN_CHECK(cudnnSetRNNDescriptor_v8(
      s_->rnn, CUDNN_RNN_ALGO_STANDARD, lstm ? CUDNN_LSTM : CUDNN_GRU, CUDNN_RNN_DOUBLE_BIAS,
      CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT, data, CUDNN_DATA_FLOAT,
      bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH, static_cast<int>(input),
      static_cast<int>(hidden), static_cast<int>(hidden), 1, s_->dropout, 0));
  std::vector<int> lengths(batch, static_cast<int>(steps));
  CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&s_->x_desc));
  CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&s_->y_desc));
  CUDNN_CHECK(cudnnSetRNNDataDescriptor(s_->x_desc, data, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                        static_cast<int>(steps), static_cast<int>(batch),
                                        static_cast<int>(input), lengths.data(), nullptr));
  CUDNN_CHECK(cudnnSetRNNDataDescriptor(s_->y_desc, data, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                        static_cast<int>(steps), static_cast<int>(batch),
                                        static_cast<int>(hidden), lengths.data(), nullptr));
  int dims[3] = {1, static_cast<int>(batch), static_cast<int>(hidden)};
  int strides[3] = {static_cast<int>(batch * hidden), static_cast<int>(hidden), 1};
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&s_->h_desc));
  CUDNN_CHECK(cudnnSetTensorNdDescriptor(s_->h_desc, data, 3, dims, strides));
  CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(s_->handle, s_->rnn, &s_->weight_bytes));
  CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(s_->handle, s_->rnn, CUDNN_FWD_MODE_TRAINING, s_->x_desc,
                                        &s_->work_bytes, &s_->reserve_bytes));
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  const auto weight_count = static_cast<int64_t>(s_->weight_bytes / dtype_size(dtype));
  s_->weights = random({weight_count}, bound);
  s_->dweights = zeros({weight_count}, {dtype, gpu});
  s_->work = empty({static_cast<int64_t>(s_->work_bytes + 4)}, {DType::f32, gpu});
  s_->reserve = empty({static_cast<int64_t>(s_->reserve_bytes + 4)}, {DType::f32, gpu});
  s_->x = random({steps, batch, input}, 1);
  s_->dx = empty({steps, batch, input}, {dtype, gpu});
  s_->y = empty({steps, batch, hidden}, {dtype, gpu});
  s_->dy = random({steps, batch, hidden}, 1);
  for (Tensor* t : {&s_->h, &s_->c, &s_->dh, &s_->dc}) *t = zeros({batch, hidden}, {dtype, gpu});
  s_->seq_lengths =
      to(from_vector(std::vector<int32_t>(lengths.begin(), lengths.end()), {batch}), gpu);
}

CudnnRnn::~CudnnRnn() {
  cudnnDestroyTensorDescriptor(s_->h_desc);
  cudnnDestroyRNNDataDescriptor(s_->x_desc);
  cudnnDestroyRNNDataDescriptor(s_->y_desc);
  cudnnDestroyRNNDescriptor(s_->rnn);
  cudnnDestroyDropoutDescriptor(s_->dropout);
  cudnnDestroy(s_->handle);
}

void CudnnRnn::forward() {
  State& s = *s_;
  CUDNN_CHECK(cudnnRNNForward(
      s.handle, s.rnn, CUDNN_FWD_MODE_TRAINING, s.seq_lengths.data<int32_t>(), s.x_desc,
      s.x.raw_data(), s.y_desc, s.y.raw_data(), s.h_desc, s.h.raw_data(), nullptr, s.h_desc,
      s.c.raw_data(), nullptr, s.weight_bytes, s.weights.raw_data(), s.work_bytes,
      s.work.raw_data(), s.reserve_bytes, s.reserve.raw_data()));
}

void CudnnRnn::backward() {
  State& s = *s_;
  CUDNN_CHECK(cudnnRNNBackwardData_v8(
      s.handle, s.rnn, s.seq_lengths.data<int32_t>(), s.y_desc, s.y.raw_data(), s.dy.raw_data(),
      s.x_desc, s.dx.raw_data(), s.h_desc, s.h.raw_data(), nullptr, s.dh.raw_data(), s.h_desc,
      s.c.raw_data(), nullptr, s.dc.raw_data(), s.weight_bytes, s.weights.raw_data(), s.work_bytes,
      s.work.raw_data(), s.reserve_bytes, s.reserve.raw_data()));
  CUDNN_CHECK(cudnnRNNBackwardWeights_v8(s.handle, s.rnn, CUDNN_WGRAD_MODE_ADD,
                                         s.seq_lengths.data<int32_t>(), s.x_desc, s.x.raw_data(),
                                         s.h_desc, s.h.raw_data(), s.y_desc, s.y.raw_data(),
                                         s.weight_bytes, s.dweights.raw_data(), s.work_bytes,
                                         s.work.raw_data(), s.reserve_bytes, s.reserve.raw_data()));
}

bool CudnnRnn::output_is_finite() const { return std::isfinite(sum(to(s_->y, DType::f32)).item()); }

}  // namespace kiln::bench
