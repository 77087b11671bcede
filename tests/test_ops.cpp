// The op table (STYLE rule 18): one entry per op drives
//   - Gradcheck: f64 central differences over the whole Jacobian, on the CPU;
//   - CudaMatchesCpu: forward output and every input gradient on CUDA vs the CPU, f32, random
//     non-zero inputs (skipped with the reason when no GPU is visible).
// Adding an op adds an entry here.
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "kernels/gemm.h"
#include "kernels/math.h"
#include "test_util.h"

namespace kiln {
namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

enum class Domain {
  signed_away_from_zero,  // |x| in [0.2, 1.2], random sign: avoids kinks (relu, max ties) at 0
  positive,               // [0.5, 2]: log, sqrt, pow, division
  index,                  // integers in [0, limit)
};

struct Input {
  Shape shape;
  Domain domain = Domain::signed_away_from_zero;
  int64_t limit = 0;  // for index inputs
};

struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  Fn fn;
  bool differentiable = true;
  double atol = 1e-5, rtol = 1e-4;  // CUDA vs CPU at f32
};

void PrintTo(const OpCase& op, std::ostream* out) { *out << op.name; }

Tensor make_input(const Input& in, DType dtype) {
  if (in.domain == Domain::index) {
    Tensor u = uniform(in.shape, 0.0, static_cast<double>(in.limit), DType::f64);
    std::vector<int64_t> values;
    for (double v : u.to_vector<double>()) values.push_back(static_cast<int64_t>(v));
    return from_vector(values, in.shape);
  }
  if (in.domain == Domain::positive) return to(uniform(in.shape, 0.5, 2.0, DType::f64), dtype);
  Tensor magnitude = uniform(in.shape, 0.2, 1.2, DType::f64);
  Tensor sign = uniform(in.shape, -1.0, 1.0, DType::f64);
  std::vector<double> m = magnitude.to_vector<double>(), s = sign.to_vector<double>();
  for (size_t i = 0; i < m.size(); ++i) m[i] = s[i] < 0 ? -m[i] : m[i];
  return to(from_vector(m, in.shape), dtype);
}

// A [T, B] mask with padding at the end of sequences 1 and 2 (lengths 3, 1, 2), on x's device.
Tensor fixed_mask(const Tensor& like, int64_t steps, int64_t batch) {
  std::vector<double> m(steps * batch, 1.0);
  int64_t lengths[] = {3, 1, 2, 3};
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t b = 0; b < batch; ++b) m[t * batch + b] = t < lengths[b % 4] ? 1.0 : 0.0;
  }
  return to(to(from_vector(m, {steps, batch}), like.dtype()), like.device());
}

Tensor flat(const std::vector<Tensor>& parts) {
  std::vector<Tensor> flat_parts;
  for (const Tensor& p : parts) flat_parts.push_back(reshape(p, {-1}));
  return cat(flat_parts, 0);
}

Tensor targets_with_ignored(const Tensor& like) {
  return to(from_vector<int64_t>({3, -100, 1, 0, 4}, {5}), like.device());
}

// Bahdanau attention's source padding [B=3, S=4] on x's device: sentence 0 unpadded, sentence 1
// of length 2, sentence 2 all padding (uniform weights, no score gradient).
Tensor attention_pad(const Tensor& like) {
  std::vector<double> pad = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  return to(to(from_vector(pad, {3, 4}), like.dtype()), like.device());
}

std::vector<OpCase> op_table() {
  const Domain pos = Domain::positive;
  std::vector<OpCase> t;
  // pointwise, binary with broadcasting
  t.push_back({"add", {{{2, 3, 4}}, {{3, 1}}}, [](auto& x) { return add(x[0], x[1]); }});
  t.push_back({"add_same_shape", {{{4, 5}}, {{4, 5}}}, [](auto& x) { return x[0] + x[1]; }});
  t.push_back({"sub", {{{4, 1}}, {{1, 5}}}, [](auto& x) { return sub(x[0], x[1]); }});
  t.push_back({"mul", {{{2, 3}}, {{3}}}, [](auto& x) { return mul(x[0], x[1]); }});
  t.push_back({"div", {{{3, 4}}, {{3, 1}, pos}}, [](auto& x) { return div(x[0], x[1]); }});
  t.push_back({"pow", {{{2, 3}, pos}, {{2, 3}}}, [](auto& x) { return pow(x[0], x[1]); }});
  t.push_back({"mul_scalar_broadcast", {{{}}, {{2, 3}}}, [](auto& x) { return x[0] * x[1]; }});
  // one operand's rows repeated over the other's (the row fast path): keys [B, S, A] + query
  // [B, 1, A] as in Bahdanau attention, a column [R, 1] over [R, C], and its mirror
  t.push_back({"add_middle_broadcast", {{{2, 3, 4}}, {{2, 1, 4}}}, [](auto& x) {
                 return add(x[0], x[1]);
               }});
  t.push_back(
      {"mul_column_broadcast", {{{3, 1}}, {{3, 4}}}, [](auto& x) { return mul(x[0], x[1]); }});
  // pointwise, unary and scalar forms
  t.push_back({"neg", {{{3, 4}}}, [](auto& x) { return -x[0]; }});
  t.push_back({"exp", {{{3, 4}}}, [](auto& x) { return exp(x[0]); }});
  t.push_back({"log", {{{3, 4}, pos}}, [](auto& x) { return log(x[0]); }});
  t.push_back({"tanh", {{{3, 4}}}, [](auto& x) { return tanh(x[0]); }});
  t.push_back({"sigmoid", {{{3, 4}}}, [](auto& x) { return sigmoid(x[0]); }});
  t.push_back({"relu", {{{3, 4}}}, [](auto& x) { return relu(x[0]); }});
  t.push_back({"sqrt", {{{3, 4}, pos}}, [](auto& x) { return sqrt(x[0]); }});
  t.push_back({"pow_scalar", {{{3, 4}, pos}}, [](auto& x) { return pow(x[0], 2.5); }});
  t.push_back({"add_scalar", {{{3, 4}}}, [](auto& x) { return x[0] + 1.5; }});
  t.push_back({"mul_scalar", {{{3, 4}}}, [](auto& x) { return 3.0 * x[0]; }});
  t.push_back({"rsub_scalar", {{{3, 4}}}, [](auto& x) { return 2.0 - x[0]; }});
  t.push_back({"rdiv_scalar", {{{3, 4}, pos}}, [](auto& x) { return 2.0 / x[0]; }});
  t.push_back({"div_scalar", {{{3, 4}}}, [](auto& x) { return x[0] / 4.0; }});
  // matrix products, every transpose flag, batched and folded
  t.push_back({"matmul", {{{3, 4}}, {{4, 5}}}, [](auto& x) { return matmul(x[0], x[1]); }});
  t.push_back(
      {"matmul_ta", {{{4, 3}}, {{4, 5}}}, [](auto& x) { return matmul(x[0], x[1], true, false); }});
  t.push_back(
      {"matmul_tb", {{{3, 4}}, {{5, 4}}}, [](auto& x) { return matmul(x[0], x[1], false, true); }});
  t.push_back({"matmul_ta_tb", {{{4, 3}}, {{5, 4}}}, [](auto& x) {
                 return matmul(x[0], x[1], true, true);
               }});
  t.push_back({"bmm", {{{2, 3, 4}}, {{2, 4, 5}}}, [](auto& x) { return matmul(x[0], x[1]); }});
  t.push_back({"bmm_ta_tb", {{{2, 4, 3}}, {{2, 5, 4}}}, [](auto& x) {
                 return matmul(x[0], x[1], true, true);
               }});
  t.push_back(
      {"matmul_3d_2d", {{{2, 3, 4}}, {{4, 5}}}, [](auto& x) { return matmul(x[0], x[1]); }});
  t.push_back({"matmul_3d_2d_tb", {{{2, 3, 4}}, {{5, 4}}}, [](auto& x) {
                 return matmul(x[0], x[1], false, true);
               }});
  // shapes and copies
  t.push_back({"reshape", {{{2, 6}}}, [](auto& x) { return reshape(x[0], {3, -1}) * 2.0; }});
  t.push_back({"transpose", {{{2, 3, 4}}}, [](auto& x) { return transpose(x[0], 0, 2); }});
  t.push_back({"transpose_last", {{{3, 5}}}, [](auto& x) { return transpose(x[0], -1, -2); }});
  // the last dim stays last: the row-wise permute (kernels/copy.cpp)
  t.push_back({"transpose_outer", {{{3, 2, 4}}}, [](auto& x) { return transpose(x[0], 0, 1); }});
  t.push_back({"narrow", {{{5, 3}}}, [](auto& x) { return narrow(x[0], 1, 3) * 2.0; }});
  t.push_back({"select", {{{4, 3}}}, [](auto& x) { return select(x[0], 2) * 2.0; }});
  // rows 0 and 2 used, row 1 not: its gradient is the zeros the engine fills in
  t.push_back({"unbind", {{{3, 2, 4}}}, [](auto& x) {
                 std::vector<Tensor> rows = unbind(x[0]);
                 return rows[0] * rows[2] + rows[0];
               }});
  t.push_back({"cat_dim0", {{{2, 3}}, {{1, 3}}}, [](auto& x) { return cat({x[0], x[1]}, 0); }});
  t.push_back({"cat_dim1", {{{2, 3}}, {{2, 4}}, {{2, 1}}}, [](auto& x) {
                 return cat({x[0], x[1], x[2]}, 1);
               }});
  t.push_back({"cat_last_3d", {{{2, 2, 3}}, {{2, 2, 2}}}, [](auto& x) {
                 return cat({x[0], x[1]}, -1);
               }});
  t.push_back({"stack_dim1", {{{2, 3}}, {{2, 3}}}, [](auto& x) { return stack({x[0], x[1]}, 1); }});
  t.push_back({"clone", {{{3, 2}}}, [](auto& x) { return clone(x[0]) * 2.0; }});
  // reductions
  t.push_back({"sum_all", {{{3, 4}}}, [](auto& x) { return sum(x[0]); }});
  t.push_back({"sum_all_large", {{{3000}}}, [](auto& x) { return sum(x[0]); }, true, 1e-4, 1e-4});
  t.push_back({"sum_dim0", {{{3, 4}}}, [](auto& x) { return sum(x[0], 0); }});
  t.push_back(
      {"sum_dim0_long", {{{700, 3}}}, [](auto& x) { return sum(x[0], 0); }});  // chunked path
  t.push_back({"mean_dim1_long", {{{2, 300, 2}}}, [](auto& x) { return mean(x[0], 1); }});
  t.push_back({"sum_dim1_keepdim", {{{2, 3, 4}}}, [](auto& x) { return sum(x[0], 1, true); }});
  t.push_back({"mean_all", {{{3, 4}}}, [](auto& x) { return mean(x[0]); }});
  t.push_back({"mean_dim", {{{3, 4}}}, [](auto& x) { return mean(x[0], -1); }});
  t.push_back({"max_last", {{{3, 5}}}, [](auto& x) { return max(x[0], -1); }});
  t.push_back(
      {"argmax_last", {{{4, 7}}}, [](auto& x) { return to(argmax(x[0]), DType::f64); }, false});
  t.push_back({"topk_values", {{{4, 300}}}, [](auto& x) { return topk(x[0], 10).first; }, false});
  t.push_back({"topk_ids",
               {{{4, 300}}},
               [](auto& x) { return to(topk(x[0], 10).second, DType::f64); },
               false});
  t.push_back({"sum_to", {{{4, 2, 3}}}, [](auto& x) { return sum_to(x[0], {2, 1}); }});
  // softmax
  t.push_back({"softmax", {{{3, 5}}}, [](auto& x) { return softmax(x[0]); }});
  t.push_back({"log_softmax", {{{2, 2, 5}}}, [](auto& x) { return log_softmax(x[0], -1); }});
  t.push_back({"log_softmax_topk_values",
               {{{4, 300}}},
               [](auto& x) { return log_softmax_topk(x[0], 10).first; },
               false});
  t.push_back({"log_softmax_topk_ids",
               {{{4, 300}}},
               [](auto& x) { return to(log_softmax_topk(x[0], 10).second, DType::f64); },
               false});
  // fused Bahdanau attention: key_proj [B=3, S=4, A=3], query_proj [3, 3], v [3], keys [3, 4, 2];
  // both outputs, then each alone (the engine passes zeros for the other)
  auto attention_inputs = std::vector<Input>{{{3, 4, 3}}, {{3, 3}}, {{3}}, {{3, 4, 2}}};
  auto attention = [](const std::vector<Tensor>& x) {
    return bahdanau_attention(x[0], x[1], x[2], x[3], attention_pad(x[0]));
  };
  t.push_back({"bahdanau_attention", attention_inputs, [=](auto& x) {
                 auto [context, weights] = attention(x);
                 return flat({context, weights});
               }});
  t.push_back({"bahdanau_attention_context", attention_inputs,
               [=](auto& x) { return attention(x).first; }});
  t.push_back({"bahdanau_attention_weights", attention_inputs,
               [=](auto& x) { return attention(x).second; }});
  // indexing and selection
  t.push_back({"embedding", {{{6, 3}}, {{2, 5}, Domain::index, 6}}, [](auto& x) {
                 return embedding(x[0], x[1]);
               }});
  t.push_back({"index_select", {{{5, 2}}, {{7}, Domain::index, 5}}, [](auto& x) {
                 return index_select(x[0], 0, x[1]);
               }});
  t.push_back({"where", {{{3}}, {{2, 3}}, {{2, 1}}}, [](auto& x) {
                 return where(relu(x[0]), x[1], x[2]);
               }});
  t.push_back({"masked_fill", {{{2, 3}}, {{3}}}, [](auto& x) {
                 return masked_fill(x[0], relu(x[1]), -4.0);
               }});
  // recurrent layers (x [T=3, B=3, I=2], H=2) and cells; every output and gradient compared
  auto lstm_inputs =
      std::vector<Input>{{{3, 3, 2}}, {{3, 2}}, {{3, 2}}, {{8, 2}}, {{8, 2}}, {{8}}, {{8}}};
  auto gru_inputs = std::vector<Input>{{{3, 3, 2}}, {{3, 2}}, {{6, 2}}, {{6, 2}}, {{6}}, {{6}}};
  t.push_back({"lstm_layer", lstm_inputs, [](auto& x) {
                 RnnOutput o = lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]});
                 return flat({o.y, o.h_n, o.c_n});
               }});
  t.push_back({"lstm_layer_masked_reverse", lstm_inputs, [](auto& x) {
                 RnnOutput o = lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]},
                                          fixed_mask(x[0], 3, 3), true);
                 return flat({o.y, o.h_n, o.c_n});
               }});
  t.push_back({"lstm_layer_masked", lstm_inputs, [](auto& x) {
                 RnnOutput o =
                     lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]}, fixed_mask(x[0], 3, 3));
                 return flat({o.y, o.h_n, o.c_n});
               }});
  // x_gates [B, G]: a fixed input's share of the gates, added at every step (Recurrent's
  // fixed_input); its gradient is summed over the real steps.
  auto with_x_gates = [](std::vector<Input> inputs, int64_t gates) {
    inputs.push_back({{3, gates}});
    return inputs;
  };
  t.push_back({"lstm_layer_masked_x_gates", with_x_gates(lstm_inputs, 8), [](auto& x) {
                 RnnOutput o = lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]},
                                          fixed_mask(x[0], 3, 3), false, x[7]);
                 return flat({o.y, o.h_n, o.c_n});
               }});
  // With the caller's transposed weights (RnnWeights::w_ih_t, w_hh_t, prepared decoding's): the
  // products read them untransposed; the gradients still go to w_ih and w_hh.
  t.push_back({"lstm_layer_masked_transposed", lstm_inputs, [](auto& x) {
                 RnnWeights w{x[3], x[4], x[5], x[6], transpose(x[3], 0, 1), transpose(x[4], 0, 1)};
                 RnnOutput o = lstm_layer(x[0], x[1], x[2], w, fixed_mask(x[0], 3, 3));
                 return flat({o.y, o.h_n, o.c_n});
               }});
  t.push_back(
      {"lstm_cell", {{{3, 2}}, {{3, 2}}, {{3, 2}}, {{8, 2}}, {{8, 2}}, {{8}}, {{8}}}, [](auto& x) {
         RnnOutput o = lstm_cell(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]});
         return flat({o.h_n, o.c_n});
       }});
  t.push_back({"gru_layer", gru_inputs, [](auto& x) {
                 RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]});
                 return flat({o.y, o.h_n});
               }});
  t.push_back({"gru_layer_masked_reverse", gru_inputs, [](auto& x) {
                 RnnOutput o =
                     gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]}, fixed_mask(x[0], 3, 3), true);
                 return flat({o.y, o.h_n});
               }});
  t.push_back(
      {"gru_layer_masked", gru_inputs, [](auto& x) {
         RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]}, fixed_mask(x[0], 3, 3));
         return flat({o.y, o.h_n});
       }});
  t.push_back({"gru_layer_masked_reverse_x_gates", with_x_gates(gru_inputs, 6), [](auto& x) {
                 RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]},
                                         fixed_mask(x[0], 3, 3), true, x[6]);
                 return flat({o.y, o.h_n});
               }});
  // An input of no features (I = 0, prepared decoding's looked-up embedding gates): the gates
  // come from x_gates alone; every other gradient as with an input.
  t.push_back({"gru_layer_masked_no_input_x_gates",
               {{{3, 3, 0}}, {{3, 2}}, {{6, 0}}, {{6, 2}}, {{6}}, {{6}}, {{3, 6}}},
               [](auto& x) {
                 RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]},
                                         fixed_mask(x[1], 3, 3), false, x[6]);
                 return flat({o.y, o.h_n});
               }});
  // One step of no features (a decoding step with the table): the layer reads x_gates in place.
  t.push_back(
      {"gru_layer_one_step_no_input_x_gates",
       {{{1, 3, 0}}, {{3, 2}}, {{6, 0}}, {{6, 2}}, {{6}}, {{6}}, {{3, 6}}},
       [](auto& x) {
         RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]}, Tensor(), false, x[6]);
         return flat({o.y, o.h_n});
       }});
  t.push_back({"lstm_layer_no_input_x_gates",
               {{{3, 3, 0}}, {{3, 2}}, {{3, 2}}, {{8, 0}}, {{8, 2}}, {{8}}, {{8}}, {{3, 8}}},
               [](auto& x) {
                 RnnOutput o =
                     lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]}, Tensor(), false, x[7]);
                 return flat({o.y, o.h_n, o.c_n});
               }});
  // x_gates [T, B, G]: each step's own gates (prepared encoding's looked-up embedding gates), alone
  // or added to the input's; their gradient is the input-gate gradient.
  t.push_back({"gru_layer_masked_no_input_step_gates",
               {{{3, 3, 0}}, {{3, 2}}, {{6, 0}}, {{6, 2}}, {{6}}, {{6}}, {{3, 3, 6}}},
               [](auto& x) {
                 RnnOutput o = gru_layer(x[0], x[1], {x[2], x[3], x[4], x[5]},
                                         fixed_mask(x[1], 3, 3), true, x[6]);
                 return flat({o.y, o.h_n});
               }});
  std::vector<Input> lstm_step_gates = lstm_inputs;
  lstm_step_gates.push_back({{3, 3, 8}});
  t.push_back({"lstm_layer_masked_step_gates", lstm_step_gates, [](auto& x) {
                 RnnOutput o = lstm_layer(x[0], x[1], x[2], {x[3], x[4], x[5], x[6]},
                                          fixed_mask(x[0], 3, 3), false, x[7]);
                 return flat({o.y, o.h_n, o.c_n});
               }});
  t.push_back({"gru_layer_masked_reverse_transposed", gru_inputs, [](auto& x) {
                 RnnWeights w{x[2], x[3], x[4], x[5], transpose(x[2], 0, 1), transpose(x[3], 0, 1)};
                 RnnOutput o = gru_layer(x[0], x[1], w, fixed_mask(x[0], 3, 3), true);
                 return flat({o.y, o.h_n});
               }});
  t.push_back({"gru_cell", {{{3, 2}}, {{3, 2}}, {{6, 2}}, {{6, 2}}, {{6}}, {{6}}}, [](auto& x) {
                 return gru_cell(x[0], x[1], {x[2], x[3], x[4], x[5]}).h_n;
               }});
  // fused masked softmax cross-entropy
  t.push_back(
      {"cross_entropy_mean_smoothed", {{{5, 6}}}, [](auto& x) {
         return cross_entropy(x[0], targets_with_ignored(x[0]), {-100, 0.1, Reduction::mean});
       }});
  t.push_back(
      {"cross_entropy_sum_masked", {{{5, 6}}}, [](auto& x) {
         Tensor mask =
             to(to(from_vector<double>({1, 1, 0, 1, 1}, {5}), x[0].dtype()), x[0].device());
         return cross_entropy(x[0], targets_with_ignored(x[0]), {-100, 0.0, Reduction::sum}, mask);
       }});
  t.push_back(
      {"cross_entropy_none", {{{5, 6}}}, [](auto& x) {
         return cross_entropy(x[0], targets_with_ignored(x[0]), {-100, 0.2, Reduction::none});
       }});
  // a composite, as a model would use them
  t.push_back({"mlp_layer", {{{4, 3}}, {{3, 5}}, {{5}}}, [](auto& x) {
                 return log_softmax(tanh(matmul(x[0], x[1]) + x[2]));
               }});
  return t;
}

class OpTable : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpTable, Gradcheck) {
  const OpCase& op = GetParam();
  if (!op.differentiable) GTEST_SKIP() << op.name << " is not differentiable";
  manual_seed(1234);
  std::vector<Tensor> inputs;
  for (const Input& in : op.inputs) inputs.push_back(make_input(in, DType::f64));
  GradcheckResult result = gradcheck(op.fn, inputs);
  EXPECT_TRUE(result.ok) << op.name << ": " << result.message;
}

TEST_P(OpTable, CudaMatchesCpu) {
  KILN_REQUIRE_GPU();
  const OpCase& op = GetParam();
  manual_seed(99);
  std::vector<Tensor> cpu_inputs, cuda_inputs;
  for (const Input& in : op.inputs) {
    Tensor x = make_input(in, DType::f32);
    Tensor y = to(x, Device::cuda());
    if (op.differentiable && is_floating(x.dtype())) {
      x.set_requires_grad(true);
      y.set_requires_grad(true);
    }
    cpu_inputs.push_back(x);
    cuda_inputs.push_back(y);
  }
  Tensor cpu_out = op.fn(cpu_inputs), cuda_out = op.fn(cuda_inputs);
  ASSERT_EQ(cuda_out.device(), Device::cuda());
  EXPECT_TRUE(testing::all_close(cuda_out, cpu_out, op.atol, op.rtol)) << op.name << " forward";
  if (!op.differentiable) return;
  Tensor grad = make_input({cpu_out.shape()}, DType::f32);
  backward(cpu_out, grad);
  backward(cuda_out, to(grad, Device::cuda()));
  for (size_t k = 0; k < cpu_inputs.size(); ++k) {
    if (!cpu_inputs[k].requires_grad()) continue;
    // An input may get no gradient at all (where's condition): then on neither device.
    ASSERT_EQ(cuda_inputs[k].grad().defined(), cpu_inputs[k].grad().defined())
        << op.name << " input " << k;
    if (!cpu_inputs[k].grad().defined()) continue;
    EXPECT_TRUE(testing::all_close(cuda_inputs[k].grad(), cpu_inputs[k].grad(), op.atol, op.rtol))
        << op.name << " gradient of input " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpTable, ::testing::ValuesIn(op_table()),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return info.param.name;
                         });

// The CPU's inline exp and tanh (kernels/math.h) on a NaN: NaN out, with no undefined conversion
// of the NaN to an int on the way (UBSan flagged it when a diverged run fed NaNs to the gates).
TEST(Math, NanPassesThroughTheHostExpAndTanh) {
  EXPECT_TRUE(std::isnan(math::exp(std::nanf(""))));
  EXPECT_TRUE(std::isnan(math::tanh(std::nanf(""))));
  EXPECT_TRUE(std::isnan(math::sigmoid(std::nanf(""))));
  EXPECT_FLOAT_EQ(math::exp(1.0f), std::exp(1.0f));
  EXPECT_EQ(math::exp(-200.0f), math::exp(-87.33654f));  // clamped: tiny, not a denormal mess
}

// The softmax family's exp of x <= 0 gives math::exp's bits exactly over [-100, 0] (its clamp at
// -87.34 included): every 13th float of the range (all of them, 1.1e9, also agree: 8 s, too long
// for the sanitizer run), and passes a NaN through.
TEST(Math, ExpOfANonPositiveArgumentIsExactlyMathExp) {
  const float low = -100.0f;
  uint32_t first, last;  // negative floats: their bit patterns grow as the values fall
  const float zero = -0.0f;
  std::memcpy(&first, &zero, sizeof first);
  std::memcpy(&last, &low, sizeof last);
  int64_t checked = 0, differing = 0;
  for (uint64_t bits = first; bits <= last; bits += 13) {
    const uint32_t pattern = static_cast<uint32_t>(bits);
    float x;
    std::memcpy(&x, &pattern, sizeof x);
    const float fast = math::exp_nonpositive(x), reference = math::exp(x);
    differing += std::memcmp(&fast, &reference, sizeof fast) != 0;
    ++checked;
  }
  EXPECT_EQ(differing, 0) << "of " << checked << " floats";
  EXPECT_GT(checked, int64_t{80000000});
  EXPECT_TRUE(std::isnan(math::exp_nonpositive(std::nanf(""))));
  EXPECT_EQ(math::exp_nonpositive(0.0), 1.0);
}

// A CUDA build opens cuBLAS at its first GPU product, not at start (loading it cost every process
// 0.3-0.4 s): without a GPU nothing has loaded it before this test, which then opens it.
TEST(Gemm, CublasIsOpenedOnFirstUseNotAtStart) {
#ifndef KILN_WITH_CUDA
  GTEST_SKIP() << "this build has no CUDA";
#else
  auto mapped = [] {
    std::ifstream maps("/proc/self/maps");
    std::stringstream text;
    text << maps.rdbuf();
    return text.str().find("libcublas") != std::string::npos;
  };
  if (!cuda::is_available()) {
    EXPECT_FALSE(mapped());
  }
  kernels::load_cublas();
  EXPECT_TRUE(mapped());
#endif
}

// f32 products on the CPU through each library kiln has (kernels/cpu/gemm.cpp: small ones to
// libxsmm, large ones to oneDNN, the rest to OpenBLAS), and through OpenBLAS alone, against the
// same product in f64: every transpose flag, a batch with strides, a batch that reuses one B
// (stride 0), and beta = 1 accumulation.
TEST(Gemm, F32ProductsMatchF64WhateverTheBackend) {
  const std::vector<std::array<int64_t, 3>> shapes = {
      {3, 5, 4},    {64, 96, 32},  {64, 128, 32},  {64, 32, 96},
      {96, 32, 64}, {100, 300, 70}, {256, 300, 120}, {64, 1536, 96}};
  std::set<std::string> libraries;
  for (kernels::CpuGemmPolicy policy :
       {kernels::CpuGemmPolicy::automatic, kernels::CpuGemmPolicy::openblas_only}) {
    kernels::set_cpu_gemm_policy(policy);
    for (const auto& [m, n, k] : shapes) {
      for (int flags = 0; flags < 8; ++flags) {
        kernels::GemmShape s;
        s.trans_a = flags & 1;
        s.trans_b = flags & 2;
        const bool shared_b = flags & 4;
        s.batch = 2;
        s.m = m, s.n = n, s.k = k;
        s.stride_a = m * k, s.stride_b = shared_b ? 0 : k * n, s.stride_c = m * n;
        Tensor a = normal({2, m * k}, 0, 1), b = normal({shared_b ? 1 : 2, k * n}, 0, 1),
               c = normal({2, m * n}, 0, 1);
        Tensor a64 = to(a, DType::f64), b64 = to(b, DType::f64), c64 = to(c, DType::f64);
        const double alpha = flags == 2 ? 0.5 : 1.0;  // libxsmm's JIT takes alpha = 1 only
        kernels::gemm(s, alpha, a, b, 1.0, c);
        kernels::gemm(s, alpha, a64, b64, 1.0, c64);
        const char* library =
            kernels::cpu_gemm_library_name(kernels::cpu_gemm_library(DType::f32, s));
        libraries.insert(library);
        EXPECT_TRUE(testing::all_close(to(c, DType::f64), c64, 1e-4, 1e-4))
            << library << ": M=" << m << " N=" << n << " K=" << k << " trans_a " << s.trans_a
            << " trans_b " << s.trans_b << " shared B " << shared_b;
      }
    }
  }
  kernels::set_cpu_gemm_policy(kernels::CpuGemmPolicy::automatic);
  EXPECT_TRUE(libraries.count("OpenBLAS"));
  EXPECT_EQ(libraries.count("libxsmm"), kernels::built_with_libxsmm() ? 1u : 0u);
  EXPECT_EQ(libraries.count("oneDNN"), kernels::built_with_onednn() ? 1u : 0u);
}

// Which library takes a CPU product (kernels/gemm.h): by size and transposes, f64 always to
// OpenBLAS, everything to OpenBLAS under openblas_only; and KILN_CPU_GEMM's values.
TEST(Gemm, CpuProductsGoToTheLibraryTheSizeRuleNames) {
  using kernels::CpuGemmLibrary;
  auto library = [](DType dtype, int64_t m, int64_t n, int64_t k, bool trans_b) {
    kernels::GemmShape s;
    s.m = m, s.n = n, s.k = k, s.trans_b = trans_b;
    return kernels::cpu_gemm_library(dtype, s);
  };
  const CpuGemmLibrary small = kernels::built_with_libxsmm() ? CpuGemmLibrary::libxsmm
                                                             : CpuGemmLibrary::openblas;
  const CpuGemmLibrary large = kernels::built_with_onednn() ? CpuGemmLibrary::onednn
                                                            : CpuGemmLibrary::openblas;
  kernels::set_cpu_gemm_policy(kernels::CpuGemmPolicy::automatic);
  EXPECT_EQ(library(DType::f32, 64, 64, 64, false), small);
  EXPECT_EQ(library(DType::f32, 64, 64, 64, true), large);  // libxsmm takes no transposed B
  EXPECT_EQ(library(DType::f32, 64, 65, 64, false), large);
  EXPECT_EQ(library(DType::f32, 64, 512, 255, false), large);
  EXPECT_EQ(library(DType::f32, 64, 8000, 512, true), large);
  EXPECT_EQ(library(DType::f32, 0, 8, 8, false), CpuGemmLibrary::openblas);  // nothing to do
  // Threads: one for libxsmm and for oneDNN up to kSingleThreadGemmVolume, else the policy's.
  auto threads = [](int64_t m, int64_t n, int64_t k, bool trans_b) {
    kernels::GemmShape s;
    s.m = m, s.n = n, s.k = k, s.trans_b = trans_b;
    return kernels::cpu_gemm_threads(DType::f32, s);
  };
  EXPECT_EQ(threads(64, 64, 64, false), kernels::built_with_libxsmm() ? 1 : num_threads());
  EXPECT_EQ(threads(64, 256, 64, true), kernels::built_with_onednn() ? 1 : num_threads());
  EXPECT_EQ(threads(64, 128, 128, true), kernels::built_with_onednn() ? 1 : num_threads());  // 2^20
  EXPECT_EQ(threads(64, 128, 129, true), num_threads());  // just above kSingleThreadGemmVolume
  EXPECT_EQ(kernels::cpu_gemm_threads(DType::f64, {}), num_threads());
  EXPECT_EQ(library(DType::f64, 64, 8000, 512, false), CpuGemmLibrary::openblas);
  EXPECT_EQ(library(DType::f64, 4, 4, 4, false), CpuGemmLibrary::openblas);
  kernels::set_cpu_gemm_policy(kernels::CpuGemmPolicy::openblas_only);
  EXPECT_EQ(library(DType::f32, 64, 64, 64, false), CpuGemmLibrary::openblas);
  EXPECT_EQ(library(DType::f32, 64, 8000, 512, true), CpuGemmLibrary::openblas);
  kernels::set_cpu_gemm_policy(kernels::CpuGemmPolicy::automatic);

  EXPECT_EQ(kernels::parse_cpu_gemm_policy(""), kernels::CpuGemmPolicy::automatic);
  EXPECT_EQ(kernels::parse_cpu_gemm_policy("auto"), kernels::CpuGemmPolicy::automatic);
  EXPECT_EQ(kernels::parse_cpu_gemm_policy("openblas"), kernels::CpuGemmPolicy::openblas_only);
  for (const char* bad : {"OpenBLAS", "onednn", " auto", "1"}) {
    EXPECT_CONTAINS(testing::error_of([&] { kernels::parse_cpu_gemm_policy(bad); }),
                    std::string("KILN_CPU_GEMM='") + bad + "': expected auto");
  }
}

// The CPU's tiled transpose of the last two dims (kernels/copy.cpp) against element loops: sizes
// that are not multiples of its 32-square tiles, leading dims, an integer dtype, and a permute
// that also moves a leading dim (the general path).
TEST(Permute, TransposeOfTheLastTwoDimsMatchesElementLoops) {
  for (const Shape& shape : std::vector<Shape>{{1, 1}, {33, 65}, {64, 32}, {3, 40, 7}, {2, 2, 31, 97}}) {
    for (DType dtype : {DType::f32, DType::i64}) {
      const int64_t rows = shape[shape.size() - 2], cols = shape.back();
      const int64_t matrices = shape_numel(shape) / (rows * cols);
      Tensor x = to(arange(0, static_cast<double>(shape_numel(shape)), 1), dtype);
      x = reshape(x, shape);
      const int ndim = static_cast<int>(shape.size());
      Tensor y = transpose(x, ndim - 2, ndim - 1);
      std::vector<double> vx = to(x, DType::f64).to_vector<double>(),
                          vy = to(y, DType::f64).to_vector<double>();
      for (int64_t b = 0; b < matrices; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            ASSERT_EQ(vy[(b * cols + c) * rows + r], vx[(b * rows + r) * cols + c])
                << x.describe() << " element " << b << ", " << r << ", " << c;
          }
        }
      }
    }
  }
  Tensor x = reshape(arange(0, 24, 1), {2, 3, 4});
  Tensor y = transpose(x, 0, 2);  // [4, 3, 2]: not the last two dims
  std::vector<float> vx = x.to_vector<float>(), vy = y.to_vector<float>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) ASSERT_EQ(vy[(k * 3 + j) * 2 + i], vx[(i * 3 + j) * 4 + k]);
  // The last dim kept (whole rows copied), past the parallel grain: [2, 320, 64] -> [320, 2, 64].
  x = reshape(arange(0, 2 * 320 * 64, 1), {2, 320, 64});
  y = transpose(x, 0, 1);
  vx = x.to_vector<float>(), vy = y.to_vector<float>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 320; ++j)
      for (int64_t k = 0; k < 64; ++k)
        ASSERT_EQ(vy[(j * 2 + i) * 64 + k], vx[(i * 320 + j) * 64 + k]);
}

// The forward values of broadcasting binary ops, fast row path and general indexer alike, against
// NumPy's rule written out as loops (a dim of 1 repeats; missing leading dims are 1s).
TEST(Broadcast, BinaryForwardMatchesElementLoops) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 1, 4}}, {{2, 3, 4}, {4}},
      {{3, 4}, {3, 1}},       {{3, 1}, {3, 4}},
      {{2, 3, 4}, {1, 3, 1}}, {{2, 3, 4, 5}, {2, 1, 1, 5}},
      {{2, 3, 4}, {3, 4}},    {{4, 1}, {1, 5}},
      {{2, 3}, {2, 3}},       {{5}, {}}};
  for (const auto& [shape_a, shape_b] : cases) {
    Tensor a = normal(shape_a, 0, 1), b = normal(shape_b, 0, 1);
    Tensor y = a * b - b;
    Shape out = y.shape();
    std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>(),
                       vy = y.to_vector<float>();
    // The flat index into a tensor of `shape` (right-aligned to `out`) of output element `i`.
    auto index_in = [&](const Shape& shape, int64_t i) {
      int64_t index = 0, stride = 1;
      for (size_t d = out.size(); d-- > 0;) {
        int64_t coordinate = i % out[d];
        i /= out[d];
        size_t pad = out.size() - shape.size();
        if (d < pad) continue;
        int64_t size = shape[d - pad];
        index += (size == 1 ? 0 : coordinate) * stride;
        stride *= size;
      }
      return index;
    };
    for (int64_t i = 0; i < y.numel(); ++i) {
      float x = va[index_in(shape_a, i)], z = vb[index_in(shape_b, i)];
      ASSERT_FLOAT_EQ(vy[i], x * z - z)
          << "shapes " << a.describe() << " and " << b.describe() << ", element " << i;
    }
  }
}

// Operands of the output's shape take the SameShapeIndexer loop (kernels/broadcast.h), which the
// CPU vectorizes: its results and gradients are the element loop's, bit for bit, over a length
// that leaves a remainder after the vector body.
TEST(Broadcast, SameShapeBinaryOpsAndGradientsMatchElementLoopsBitForBit) {
  const int64_t n = 1000 + 13;
  Tensor a = uniform({n}, 0.5, 2.0), b = uniform({n}, 0.5, 2.0), g = normal({n}, 0, 1);
  const std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>(),
                           vg = g.to_vector<float>();
  const std::vector<float> sum = add(a, b).to_vector<float>(),
                           difference = sub(a, b).to_vector<float>(),
                           product = mul(a, b).to_vector<float>(),
                           ratio = div(a, b).to_vector<float>();
  Tensor a_leaf = clone(a), b_leaf = clone(b);
  a_leaf.set_requires_grad(true);
  b_leaf.set_requires_grad(true);
  backward(mul(a_leaf, b_leaf), g);
  const std::vector<float> grad_a = a_leaf.grad().to_vector<float>(),
                           grad_b = b_leaf.grad().to_vector<float>();
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(sum[i], va[i] + vb[i]) << i;
    ASSERT_EQ(difference[i], va[i] - vb[i]) << i;
    ASSERT_EQ(product[i], va[i] * vb[i]) << i;
    ASSERT_EQ(ratio[i], va[i] / vb[i]) << i;
    ASSERT_EQ(grad_a[i], vg[i] * vb[i]) << i;
    ASSERT_EQ(grad_b[i], vg[i] * va[i]) << i;
  }
}

}  // namespace
}  // namespace kiln
