// bahdanau_attention: one decoder step of additive attention as ONE autograd op (kernels/
// attention.h): masked scores, softmax and context in one kernel forward, one kernel (and dv's
// column sum) backward, where the taped composition took ~10 ops per step. Saved: the inputs
// (already alive: the encoder's tensors and this step's W_q query) and the weights output; the
// backward recomputes tanh(key_proj + q) rather than keeping a [B, S, A] tensor per step.
// Derivation: docs/attention_backward.md.
#include "kernels/attention.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/checks.h"
#include "core/profiler.h"

namespace kiln {

using autograd::TensorList;

namespace {

// `name` must have `shape`, key_proj's dtype and device; the error names the argument.
void check_argument(const char* name, const Tensor& t, const Shape& shape, const Tensor& key_proj,
                    const char* layout) {
  ops_detail::check_defined("bahdanau_attention", t, name);
  KILN_CHECK(t.shape() == shape, "bahdanau_attention: ", name, " must be ", layout, " = ",
             shape_str(shape), ", got ", t.describe(), " (key_proj is ", key_proj.describe(), ")");
  KILN_CHECK(t.dtype() == key_proj.dtype() && t.device() == key_proj.device(),
             "bahdanau_attention: ", name, " ", t.describe(), " must match key_proj ",
             key_proj.describe(), " in dtype and device");
}

}  // namespace

std::pair<Tensor, Tensor> bahdanau_attention(const Tensor& key_proj, const Tensor& query_proj,
                                             const Tensor& v, const Tensor& keys,
                                             const Tensor& source_pad) {
  profiler::ProfileScope profile_scope("bahdanau_attention", profiler::Category::op);
  ops_detail::check_defined("bahdanau_attention", key_proj, "key_proj");
  ops_detail::check_floating("bahdanau_attention", key_proj);
  KILN_CHECK(key_proj.dim() == 3 && key_proj.size(1) > 0, "bahdanau_attention: key_proj must be ",
             "[B, S, A] with S >= 1, got ", key_proj.describe());
  const int64_t B = key_proj.size(0), S = key_proj.size(1), A = key_proj.size(2);
  ops_detail::check_defined("bahdanau_attention", keys, "keys");
  KILN_CHECK(keys.dim() == 3, "bahdanau_attention: keys must be [B, S, Hk], got ", keys.describe());
  const int64_t Hk = keys.size(2);
  check_argument("query_proj", query_proj, {B, A}, key_proj, "[B, A]");
  check_argument("v", v, {A}, key_proj, "[A]");
  check_argument("keys", keys, {B, S, Hk}, key_proj, "[B, S, Hk]");
  check_argument("source_pad", source_pad, {B, S}, key_proj, "[B, S]");

  const kernels::BahdanauInputs in{key_proj, query_proj, v, keys, source_pad};
  Tensor context = empty({B, Hk}, key_proj.options()), weights = empty({B, S}, key_proj.options());
  kernels::bahdanau_forward(in, weights, context);

  TensorList inputs{key_proj, query_proj, v, keys};
  if (autograd::needs_grad(inputs)) {
    // The engine hands a zero gradient for an output the loss does not reach (context alone, or
    // weights alone, as the decoder uses them), so grads[0] and grads[1] are always defined.
    const kernels::BahdanauInputs saved{key_proj.detach(), query_proj.detach(), v.detach(),
                                        keys.detach(), source_pad.detach()};
    autograd::record("bahdanau_attention", inputs, {context, weights},
                     [saved, weights = weights.detach()](const TensorList& grads) {
                       kernels::BahdanauGrads g{empty(saved.key_proj.shape(), weights.options()),
                                                empty(saved.query.shape(), weights.options()),
                                                empty(saved.v.shape(), weights.options()),
                                                empty(saved.keys.shape(), weights.options())};
                       kernels::bahdanau_backward(saved, weights, grads[0], grads[1], g);
                       return TensorList{g.d_key_proj, g.d_query, g.d_v, g.d_keys};
                     });
  }
  return {context, weights};
}

}  // namespace kiln
