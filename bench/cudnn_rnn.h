// cuDNN's RNN (cudnnRNNForward, cudnnRNNBackwardData_v8, cudnnRNNBackwardWeights_v8), one layer,
// unidirectional, as the baseline kiln's fused layers are benchmarked against: fp32 data and math
// with CUDNN_FMA_MATH (no TF32), or bf16 data with fp32 math on the tensor cores
// (CUDNN_TENSOR_OP_MATH), what a PyTorch bf16 autocast run gets. Only built when CUDA and cuDNN
// are found.
#pragma once

#include <cstdint>
#include <memory>

namespace kiln::bench {

class CudnnRnn {
 public:
  // lstm: true for LSTM, false for GRU. Sizes as kiln's lstm_layer: x [T, B, I], state [B, H].
  // bf16: bf16 data, weights and states. Throws a kiln::Error with cuDNN's message when this
  // cuDNN or GPU does not take the configuration.
  CudnnRnn(bool lstm, int64_t steps, int64_t batch, int64_t input, int64_t hidden,
           bool bf16 = false);
  ~CudnnRnn();
  void forward();                 // training-mode forward (fills the reserve space)
  void backward();                // backward data + backward weights, after forward()
  bool output_is_finite() const;  // checks y after a forward

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace kiln::bench
