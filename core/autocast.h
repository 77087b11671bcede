// Mixed precision, per thread: inside an AutocastScope(DType::bf16) every f32 matrix product
// (kernels::gemm: matmul, Linear, the LSTM/GRU layers' input and recurrent products, forward and
// backward) rounds its two inputs to bf16 and accumulates in f32, which is what the GPU's matrix
// units do with bf16 (about 15x fp32's rate on an H100/H200). Everything else stays f32: the GEMM
// outputs, gate math, softmax and cross-entropy, gradients, master weights and optimizer state.
// Like torch.autocast, but one rule in one place (the GEMM) instead of a per-op list; open the
// scope around both the forward and the backward pass, since backward's products read the setting
// when they run. The flag lives in core because kernels read it, like GradMode.
#pragma once

#include "core/dtype.h"

namespace kiln {

struct Autocast {
  // DType::f32 (off: products in full f32) or DType::bf16.
  static DType gemm_inputs();
  static void set_gemm_inputs(DType dtype);  // f32 or bf16; anything else is a kiln::Error
};

class AutocastScope {
 public:
  explicit AutocastScope(DType gemm_inputs) : previous_(Autocast::gemm_inputs()) {
    Autocast::set_gemm_inputs(gemm_inputs);
  }
  ~AutocastScope() { Autocast::set_gemm_inputs(previous_); }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  DType previous_;
};

}  // namespace kiln
