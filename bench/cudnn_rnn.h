// cuDNN's RNN (cudnnRNNForward, cudnnRNNBackwardData_v8, cudnnRNNBackwardWeights_v8), one layer,
// unidirectional, fp32 data and math with CUDNN_FMA_MATH (no TF32), as the baseline kiln's fused
// layers are benchmarked against. Only built when CUDA and cuDNN are found.
#pragma once

#include <cstdint>
#include <memory>

namespace kiln::bench {

class CudnnRnn {
 public:
  // lstm: true for LSTM, false for GRU. Sizes as kiln's lstm_layer: x [T, B, I], state [B, H].
  CudnnRnn(bool lstm, int64_t steps, int64_t batch, int64_t input, int64_t hidden);
  ~CudnnRnn();
  void forward();                 // training-mode forward (fills the reserve space)
  void backward();                // backward data + backward weights, after forward()
  bool output_is_finite() const;  // checks y after a forward

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace kiln::bench
