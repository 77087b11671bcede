#include "nn/layers.h"

#include <cmath>

namespace kiln::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Options options) {
  KILN_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got ",
             in_features, " -> ", out_features);
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = register_parameter("weight",
                              init_uniform({out_features, in_features}, -bound, bound, options));
  if (with_bias) {
    bias = register_parameter("bias", init_uniform({out_features}, -bound, bound, options));
  }
}

Tensor Linear::forward(const Tensor& x) const {
  KILN_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "Linear: input ", x.describe(),
             " does not end in in_features = ", weight.size(1));
  Tensor y = x.dim() == 1 ? reshape(matmul(reshape(x, {1, -1}), weight, false, true), {-1})
                          : matmul(x, weight, false, true);
  return bias.defined() ? y + bias : y;
}

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx_,
                     Options options)
    : padding_idx(padding_idx_) {
  KILN_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: sizes must be positive, got ",
             num_embeddings, " x ", embedding_dim);
  KILN_CHECK(padding_idx < num_embeddings, "Embedding: padding_idx ", padding_idx,
             " >= num_embeddings ", num_embeddings);
  Tensor w = init_normal({num_embeddings, embedding_dim}, 0.0, 1.0, options);
  if (padding_idx >= 0) zero_(view_rows(w, padding_idx, 1));  // a checkpoint's row is zero too
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& index, const Tensor& host_index) const {
  return embedding(weight, index, padding_idx, host_index);
}

Dropout::Dropout(double p_) : p(p_) {
  KILN_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got ", p);
}

namespace init {
void xavier_uniform(Module& module) {
  NoGradGuard no_grad;
  for (auto& [name, param] : module.named_parameters()) {
    if (param.dim() >= 2) {
      double fan_out = static_cast<double>(param.size(0)),
             fan_in = static_cast<double>(param.numel() / param.size(0));
      double bound = std::sqrt(6.0 / (fan_in + fan_out));
      copy_(param, uniform(param.shape(), -bound, bound, param.options()));
    } else {
      zero_(param);
    }
  }
}
}  // namespace init

}  // namespace kiln::nn
