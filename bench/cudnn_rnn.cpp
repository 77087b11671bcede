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

CudnnRnn::CudnnRnn(bool lstm, int64_t steps, int64_t batch, int64_t input, int64_t hidden)
    : s_(new State) {
  Device gpu = Device::cuda();
  CUDNN_CHECK(cudnnCreate(&s_->handle));
  CUDNN_CHECK(cudnnCreateDropoutDescriptor(&s_->dropout));
  CUDNN_CHECK(cudnnSetDropoutDescriptor(s_->dropout, s_->handle, 0.0f, nullptr, 0, 0));
  CUDNN_CHECK(cudnnCreateRNNDescriptor(&s_->rnn));
  CUDNN_CHECK(cudnnSetRNNDescriptor_v8(
      s_->rnn, CUDNN_RNN_ALGO_STANDARD, lstm ? CUDNN_LSTM : CUDNN_GRU, CUDNN_RNN_DOUBLE_BIAS,
      CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH,
      static_cast<int>(input), static_cast<int>(hidden), static_cast<int>(hidden), 1, s_->dropout,
      0));
  std::vector<int> lengths(batch, static_cast<int>(steps));
  CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&s_->x_desc));
  CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&s_->y_desc));
  CUDNN_CHECK(cudnnSetRNNDataDescriptor(s_->x_desc, CUDNN_DATA_FLOAT,
                                        CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                        static_cast<int>(steps), static_cast<int>(batch),
                                        static_cast<int>(input), lengths.data(), nullptr));
  CUDNN_CHECK(cudnnSetRNNDataDescriptor(s_->y_desc, CUDNN_DATA_FLOAT,
                                        CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                        static_cast<int>(steps), static_cast<int>(batch),
                                        static_cast<int>(hidden), lengths.data(), nullptr));
  int dims[3] = {1, static_cast<int>(batch), static_cast<int>(hidden)};
  int strides[3] = {static_cast<int>(batch * hidden), static_cast<int>(hidden), 1};
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&s_->h_desc));
  CUDNN_CHECK(cudnnSetTensorNdDescriptor(s_->h_desc, CUDNN_DATA_FLOAT, 3, dims, strides));
  CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(s_->handle, s_->rnn, &s_->weight_bytes));
  CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(s_->handle, s_->rnn, CUDNN_FWD_MODE_TRAINING, s_->x_desc,
                                        &s_->work_bytes, &s_->reserve_bytes));
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  s_->weights = uniform({static_cast<int64_t>(s_->weight_bytes / 4)}, -bound, bound, gpu);
  s_->dweights = zeros({static_cast<int64_t>(s_->weight_bytes / 4)}, gpu);
  s_->work = empty({static_cast<int64_t>(s_->work_bytes + 4)}, {DType::f32, gpu});
  s_->reserve = empty({static_cast<int64_t>(s_->reserve_bytes + 4)}, {DType::f32, gpu});
  s_->x = uniform({steps, batch, input}, -1, 1, gpu);
  s_->dx = empty({steps, batch, input}, gpu);
  s_->y = empty({steps, batch, hidden}, gpu);
  s_->dy = uniform({steps, batch, hidden}, -1, 1, gpu);
  for (Tensor* t : {&s_->h, &s_->c, &s_->dh, &s_->dc}) *t = zeros({batch, hidden}, gpu);
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

bool CudnnRnn::output_is_finite() const { return std::isfinite(sum(s_->y).item()); }

}  // namespace kiln::bench
