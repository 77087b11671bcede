// Basic layers: Linear, Embedding, Dropout. Parameter names, shapes and default init equal
// PyTorch's nn.Linear and nn.Embedding, so state dicts move both ways.
#pragma once

#include "nn/module.h"

namespace kiln::nn {

// y = x W^T + b. x: [..., in] (2-D or 3-D) -> [..., out]. weight [out, in], bias [out];
// both uniform(+-1/sqrt(in)) as PyTorch.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Options options = {});
  Tensor forward(const Tensor& x) const;

  Tensor weight, bias;
};

// Rows of weight [num, dim] (normal(0, 1) as PyTorch); the padding_idx row is zero and receives no
// gradient. index: any shape of i32/i64 -> index.shape + [dim].
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1,
            Options options = {});
  // host_index: a CPU copy of index's values when the caller has one (see embedding()).
  Tensor forward(const Tensor& index, const Tensor& host_index = Tensor()) const;

  Tensor weight;
  int64_t padding_idx;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) const { return dropout(x, p, is_training()); }

  double p;
};

namespace init {
// Xavier/Glorot uniform on every parameter of rank >= 2 (bound sqrt(6 / (fan_in + fan_out))),
// zeros on biases (rank 1). Embedding padding rows are zeroed again afterwards by the caller if
// needed.
void xavier_uniform(Module& module);
}  // namespace init

}  // namespace kiln::nn
