#include "models/seq2seq/model.h"

#include <cmath>

#include "kernels/gemm.h"

namespace kiln::seq2seq {

namespace {
int64_t key_size(const ModelConfig& c) { return c.hidden_size * (c.bidirectional ? 2 : 1); }
}  // namespace

AttentionLayer::AttentionLayer(Attention kind, int64_t query_size, int64_t key_size_,
                               int64_t attention_size, Options options)
    : kind_(kind) {
  if (kind == Attention::bahdanau) {
    w_q_ = register_module(
        "w_q", std::make_shared<nn::Linear>(query_size, attention_size, false, options));
    w_k_ = register_module("w_k",
                           std::make_shared<nn::Linear>(key_size_, attention_size, false, options));
    w_v_ = register_module("w_v", std::make_shared<nn::Linear>(attention_size, 1, false, options));
  } else if (kind == Attention::luong_general) {
    w_q_ =
        register_module("w_q", std::make_shared<nn::Linear>(query_size, key_size_, false, options));
  } else {
    KILN_CHECK(query_size == key_size_, "luong (dot) attention needs the decoder hidden size ",
               query_size, " to equal the encoder output size ", key_size_, "; use luong-general");
  }
}

Tensor AttentionLayer::project_keys(const Tensor& keys) const {
  return kind_ == Attention::bahdanau ? w_k_->forward(keys) : Tensor();
}

std::pair<Tensor, Tensor> AttentionLayer::forward(const Tensor& query,
                                                  const EncoderOutput& enc) const {
  if (kind_ == Attention::bahdanau) {
    // One fused op for scores, mask, softmax and context; W_q stays a GEMM.
    return bahdanau_attention(enc.key_proj, w_q_->forward(query), reshape(w_v_->weight, {-1}),
                              enc.keys, enc.source_pad);
  }
  int64_t batch = enc.keys.size(0), src_len = enc.keys.size(1);
  Tensor q = kind_ == Attention::luong_general ? w_q_->forward(query) : query;  // [B, Hk]
  Tensor scores = reshape(matmul(enc.keys, reshape(q, {batch, -1, 1})), {batch, src_len});
  Tensor weights = softmax(masked_fill(scores, enc.source_pad, -1e9));
  Tensor context = reshape(matmul(reshape(weights, {batch, 1, src_len}), enc.keys), {batch, -1});
  return {context, weights};
}

Encoder::Encoder(const ModelConfig& c, Options options) {
  embedding = register_module("embedding", std::make_shared<nn::Embedding>(
                                               c.source_vocab, c.embed_size, c.pad_id, options));
  rnn = register_module("rnn", std::make_shared<nn::Recurrent>(
                                   c.cell, nn::RnnOptions{c.embed_size, c.hidden_size, c.num_layers,
                                                          c.dropout, c.bidirectional, options}));
}

Decoder::Decoder(const ModelConfig& c, Options options) {
  int64_t context_size = c.attention == Attention::none ? c.hidden_size : key_size(c);
  embedding = register_module("embedding", std::make_shared<nn::Embedding>(
                                               c.target_vocab, c.embed_size, c.pad_id, options));
  rnn =
      register_module("rnn", std::make_shared<nn::Recurrent>(
                                 c.cell, nn::RnnOptions{c.embed_size + context_size, c.hidden_size,
                                                        c.num_layers, c.dropout, false, options}));
  if (c.attention != Attention::none) {
    int64_t size = c.attention_size > 0 ? c.attention_size : c.hidden_size;
    attention = register_module(
        "attention",
        std::make_shared<AttentionLayer>(c.attention, c.hidden_size, key_size(c), size, options));
  }
  dense = register_module(
      "dense", std::make_shared<nn::Linear>(c.hidden_size, c.target_vocab, true, options));
}

Seq2Seq::Seq2Seq(const ModelConfig& config, Options options) : config_(config) {
  config_.validate();
  encoder_ = register_module("encoder", std::make_shared<Encoder>(config_, options));
  if (config_.bidirectional) {
    bridge_ = register_module(
        "bridge",
        std::make_shared<nn::Linear>(2 * config_.hidden_size, config_.hidden_size, true, options));
  }
  decoder_ = register_module("decoder", std::make_shared<Decoder>(config_, options));
}

EncoderOutput Seq2Seq::encode(const Tensor& source, const Tensor& source_lengths,
                              const HostCopies& host, const DecodingWeights* prepared) const {
  KILN_CHECK(source.dim() == 2, "Seq2Seq::encode: source must be [S, B] token ids, got ",
             source.describe());
  int64_t layers = config_.num_layers, batch = source.size(1), hidden = config_.hidden_size;
  const int64_t steps = source.size(0);
  const bool use_prepared = prepared && !prepared->encoder_layers.empty() && !is_training();
  // With the prepared tables, the first layer's input gates are looked up per token and the
  // embeddings are never made (the RNN reads an input of no features).
  std::vector<Tensor> first_gates;
  if (use_prepared) {
    for (const Tensor& table : prepared->encoder_embedding_gates) {
      first_gates.push_back(embedding(table, source, -1, host.source));  // [S, B, G]
    }
  }
  const Options options = encoder_->embedding->weight.options();
  Tensor embedded = first_gates.empty() ? encoder_->embedding->forward(source, host.source)
                                        : empty({steps, batch, 0}, options);
  // The lengths are read on the host once per batch: the RNN's step mask and, batch-major and
  // inverted, the attention's padding mask (1 where position s >= length).
  Tensor step_mask = nn::sequence_mask(source_lengths, steps, options, host.source_lengths);
  nn::RnnState s =
      encoder_->rnn->forward(embedded, Tensor(), Tensor(), source_lengths, step_mask, Tensor(),
                             use_prepared ? &prepared->encoder_layers : nullptr, first_gates);
  EncoderOutput enc;
  if (decoder_->attention) {  // what attention reads; a decoder without it reads the final state
    enc.keys = transpose(s.y, 0, 1);  // [B, S, Hk]
    enc.source_pad = rsub(1.0, transpose(step_mask, 0, 1));
  }
  auto bridge = [&](const Tensor& state) {  // [L*D, B, H] -> [L, B, H]
    if (!config_.bidirectional) return state;
    // Per layer, concatenate the two directions' final states and project them.
    Tensor both = reshape(transpose(reshape(state, {layers, 2, batch, hidden}), 1, 2),
                          {layers, batch, 2 * hidden});
    return bridge_->forward(both);
  };
  enc.init_h = bridge(s.h_n);
  if (config_.cell == nn::CellType::lstm) enc.init_c = bridge(s.c_n);
  enc.context = select(enc.init_h, layers - 1);
  if (decoder_->attention) enc.key_proj = decoder_->attention->project_keys(enc.keys);
  return enc;
}

DecoderState Seq2Seq::initial_state(const EncoderOutput& enc) const {
  return {enc.init_h, enc.init_c};
}

Tensor Seq2Seq::embed_step_input(const Tensor& embedded, const Tensor& context) const {
  return cat({embedded, context}, -1);
}

namespace {
// Whether steps of `rows` rows times a fixed weight [N, K] are worth a transposed copy of it made
// once: on the CPU, when oneDNN takes the product (kernels/gemm.h), which runs it about twice as
// fast untransposed on few rows (kernels/rnn_steps.h). OpenBLAS and cuBLAS read either as fast.
bool transposed_copy_pays(const Tensor& weight, int64_t rows) {
  if (!weight.device().is_cpu()) return false;
  kernels::GemmShape s;
  s.m = rows, s.n = weight.size(0), s.k = weight.size(1);
  return kernels::cpu_gemm_library(weight.dtype(), s) == kernels::CpuGemmLibrary::onednn;
}
}  // namespace

DecodingCopies Seq2Seq::decoding_copies(int64_t rows, bool kept) const {
  DecodingCopies copies;
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    copies.layer_transposes.push_back(
        transposed_copy_pays(decoder_->rnn->weights(layer).w_hh, rows));
  }
  copies.output_transpose = transposed_copy_pays(decoder_->dense->weight, rows);
  copies.embedding_table = kept && rows >= kEmbeddingTableRows;
  return copies;
}

DecodingWeights Seq2Seq::decoding_weights(const DecodingCopies& copies) const {
  const size_t num_layers = static_cast<size_t>(config_.num_layers);
  KILN_CHECK(copies.layer_transposes.size() == num_layers,
             "Seq2Seq::decoding_weights: ", copies.layer_transposes.size(), " transpose flags for ",
             num_layers, " layers");
  NoGradGuard no_grad;
  DecodingWeights prepared;
  prepared.output = {decoder_->dense->weight, decoder_->dense->bias, Tensor()};
  if (copies.output_transpose) {
    prepared.output.weight_t = transpose(prepared.output.weight, 0, 1);
  }
  // Training-mode decoding (dropout between layers) keeps the plain path.
  if (is_training()) return prepared;
  const nn::Recurrent& encoder_rnn = *encoder_->rnn;
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    for (int64_t dir = 0; dir < encoder_rnn.num_directions(); ++dir) {
      RnnWeights w = encoder_rnn.weights(layer, dir);
      if (w.w_hh.device().is_cpu()) w.w_hh_t = transpose(w.w_hh, 0, 1);
      prepared.encoder_layers.push_back(w);
    }
  }
  for (size_t layer = 0; layer < num_layers; ++layer) {
    prepared.layers.push_back(decoder_->rnn->weights(static_cast<int64_t>(layer)));
  }
  // Layer 0's input weight is [G, E + Hc] over [embedding; context]: its columns are split where
  // the parts are computed apart. Without attention the context is fixed, so its gates are made
  // once per sentence (context_w_t); with the table the embedding's are looked up. What is left for
  // the step's product is layer 0's input weight, transposed in w_t0 when that pays.
  RnnWeights& first = prepared.layers[0];
  const bool attention = decoder_->attention != nullptr;
  const Tensor w_t = transpose(first.w_ih, 0, 1);  // [E + Hc, G]
  const int64_t embed = config_.embed_size, context = w_t.size(0) - embed;
  const Tensor embed_w_t = narrow(w_t, 0, embed), context_w_t = narrow(w_t, embed, context);
  if (!attention) prepared.context_w_t = context_w_t;
  if (copies.embedding_table) {
    prepared.embedding_gates = matmul(decoder_->embedding->weight, embed_w_t);  // [V, G]
    for (int64_t dir = 0; dir < encoder_rnn.num_directions(); ++dir) {  // [V_source, G]
      prepared.encoder_embedding_gates.push_back(
          matmul(encoder_->embedding->weight, prepared.encoder_layers[dir].w_ih, false, true));
    }
  }
  // The columns the step's product reads: with the table, the context's alone (attention) or none;
  // without it, the embedding's (no attention) or all.
  const Tensor w_t0 = copies.embedding_table
                          ? (attention ? context_w_t : empty({0, w_t.size(1)}, w_t.options()))
                          : (attention ? w_t : embed_w_t);
  if (copies.embedding_table || !attention) first.w_ih = transpose(w_t0, 0, 1);
  for (size_t layer = 0; layer < num_layers; ++layer) {
    RnnWeights& w = prepared.layers[layer];
    if (!copies.layer_transposes[layer]) continue;
    w.w_ih_t = layer == 0 ? w_t0 : transpose(w.w_ih, 0, 1);
    w.w_hh_t = transpose(w.w_hh, 0, 1);
  }
  return prepared;
}

void Seq2Seq::prepare_decoding(EncoderOutput& enc, const DecodingWeights& weights) const {
  if (is_training() || weights.layers.empty()) return;
  NoGradGuard no_grad;
  if (weights.context_w_t.defined()) enc.context_gates = matmul(enc.context, weights.context_w_t);
  enc.decoder_weights = weights.layers;
  enc.embedding_gates = weights.embedding_gates;
}

void Seq2Seq::prepare_decoding(EncoderOutput& enc, int64_t rows) const {
  if (is_training()) return;
  prepare_decoding(enc, decoding_weights(decoding_copies(rows)));
}

std::shared_ptr<const DecodingWeights> DecodingWeightsCache::get(const Seq2Seq& model,
                                                                 int64_t rows) {
  const DecodingCopies copies = model.decoding_copies(rows, /*kept=*/true);
  // The device too: a model moved by to() after an entry was made gets a new one.
  const Key key{&model, model.parameters().front().device().str(), copies, model.is_training()};
  std::lock_guard<std::mutex> lock(mutex_);
  std::shared_ptr<const DecodingWeights>& entry = entries_[key];
  if (!entry) entry = std::make_shared<const DecodingWeights>(model.decoding_weights(copies));
  return entry;
}

void DecodingWeightsCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

OutputRows Seq2Seq::output_rows(const Tensor& ids, int64_t rows) const {
  NoGradGuard no_grad;
  OutputRows out{decoder_->dense->weight, decoder_->dense->bias, Tensor()};
  if (ids.defined()) {
    out.weight = index_select(out.weight, 0, ids);
    out.bias = index_select(out.bias, 0, ids);
  }
  if (transposed_copy_pays(out.weight, rows)) out.weight_t = transpose(out.weight, 0, 1);
  return out;
}

Tensor Seq2Seq::project_output(const Tensor& hidden, const OutputRows* rows) const {
  if (!rows) return decoder_->dense->forward(hidden);
  // The same product as nn::Linear's (or its transpose's), on the prepared rows: a shortlist of
  // every id gives the logits of every row bit for bit.
  Tensor product = rows->weight_t.defined() ? matmul(hidden, rows->weight_t)
                                            : matmul(hidden, rows->weight, false, true);
  return rows->leave_bias ? product : product + rows->bias;
}

Tensor Seq2Seq::decode_step(const EncoderOutput& enc, const Tensor& token, DecoderState& state,
                            Tensor* attention_weights, const OutputRows* rows) const {
  int64_t batch = token.size(0);
  if (!enc.decoder_weights.empty()) {
    // Prepared (inference): the layers run one by one on the prepared weights (no dropout between
    // them: not training). Layer 0's input is [embedding; context]. Without attention its product
    // reads the embedding and adds the context's precomputed gates; with it, [embedding; this
    // step's context]. With the embedding table the embedding's share is looked up instead
    // (x_gates) and the product reads the step's context alone, or, without attention, nothing.
    KILN_CHECK(!is_training(), "Seq2Seq::decode_step: prepared decoding is for inference only");
    const bool table = enc.embedding_gates.defined();
    Tensor y = table ? empty({batch, 0}, enc.embedding_gates.options())
                     : decoder_->embedding->forward(token);
    Tensor first_gates = enc.context_gates;
    if (table) {
      const Tensor looked_up = index_select(enc.embedding_gates, 0, token);  // [B, G]
      first_gates = first_gates.defined() ? looked_up + first_gates : looked_up;
    }
    if (decoder_->attention) {
      auto [context, weights] =
          decoder_->attention->forward(select(state.h, config_.num_layers - 1), enc);
      if (attention_weights) *attention_weights = weights;
      y = table ? context : embed_step_input(y, context);
    }
    y = reshape(y, {1, batch, y.size(-1)});  // no -1: with the table y may have no columns
    const bool lstm = config_.cell == nn::CellType::lstm;
    std::vector<Tensor> h_n, c_n;
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      const RnnWeights& w = enc.decoder_weights[static_cast<size_t>(layer)];
      const Tensor x_gates = layer == 0 ? first_gates : Tensor();
      RnnOutput out = lstm ? lstm_layer(y, select(state.h, layer), select(state.c, layer), w,
                                        Tensor(), false, x_gates)
                           : gru_layer(y, select(state.h, layer), w, Tensor(), false, x_gates);
      y = out.y;
      h_n.push_back(out.h_n);
      if (lstm) c_n.push_back(out.c_n);
    }
    state = {stack(h_n, 0), lstm ? stack(c_n, 0) : Tensor()};
    return project_output(reshape(y, {batch, -1}), rows);
  }
  Tensor hidden =
      decode_embedded(enc, decoder_->embedding->forward(token), state, attention_weights);
  return project_output(hidden, rows);
}

Tensor Seq2Seq::decode_embedded(const EncoderOutput& enc, const Tensor& embedded,
                                DecoderState& state, Tensor* attention_weights,
                                const Tensor& target_lengths, const Tensor& step_mask) const {
  int64_t batch = embedded.size(0);
  Tensor context = enc.context;
  if (decoder_->attention) {
    auto [ctx, weights] =
        decoder_->attention->forward(select(state.h, config_.num_layers - 1), enc);
    context = ctx;
    if (attention_weights) *attention_weights = weights;
  }
  Tensor x = embed_step_input(embedded, context);
  nn::RnnState s = decoder_->rnn->forward(reshape(x, {1, batch, -1}), state.h, state.c,
                                          target_lengths, step_mask);
  state = {s.h_n, s.c_n};
  return reshape(s.y, {batch, -1});
}

Tensor Seq2Seq::teacher_hidden(const EncoderOutput& enc, const Tensor& target_in,
                               const HostCopies& host, const Tensor& target_lengths,
                               const Tensor& step_mask) const {
  const int64_t steps = target_in.size(0);
  Tensor embedded = decoder_->embedding->forward(target_in, host.target_in);  // [T, B, E]
  if (!decoder_->attention) {
    // The whole target in one RNN call. Every step's input is [embedding; the fixed context]:
    // the context's share of the input projection is computed once (fixed_input).
    return decoder_->rnn->forward(embedded, enc.init_h, enc.init_c, target_lengths, step_mask,
                                  enc.context)
        .y;
  }
  // Every step's input is known: the whole target embedded at once (one lookup, one index check
  // and one gradient scatter per batch instead of one per step), the steps run one by one.
  DecoderState state = initial_state(enc);
  std::vector<Tensor> embedded_steps = unbind(embedded), hidden;  // T x [B, E]
  for (int64_t t = 0; t < steps; ++t) {
    const Tensor step_mask_t = step_mask.defined() ? view_rows(step_mask, t, 1) : Tensor();
    hidden.push_back(
        decode_embedded(enc, embedded_steps[t], state, nullptr, target_lengths, step_mask_t));
  }
  return stack(hidden, 0);
}

Tensor Seq2Seq::decode_teacher(const EncoderOutput& enc, const Tensor& target_in,
                               double teacher_forcing, const HostCopies& host) const {
  KILN_CHECK(target_in.dim() == 2, "Seq2Seq::decode_teacher: target must be [T, B] ids, got ",
             target_in.describe());
  KILN_CHECK(teacher_forcing >= 0 && teacher_forcing <= 1,
             "teacher forcing ratio must be in [0, 1], got ", teacher_forcing);
  int64_t steps = target_in.size(0), batch = target_in.size(1);
  if (teacher_forcing >= 1.0) return decoder_->dense->forward(teacher_hidden(enc, target_in, host));
  DecoderState state = initial_state(enc);
  std::vector<Tensor> logits;
  Tensor token = select(target_in, 0);
  for (int64_t t = 0; t < steps; ++t) {
    logits.push_back(decode_step(enc, token, state));
    if (t + 1 == steps) break;
    token = select(target_in, t + 1);
    if (teacher_forcing < 1.0) {
      // Scheduled sampling: per row, the reference token with probability teacher_forcing,
      // else the model's own argmax (no gradient flows through the choice).
      std::vector<int64_t> reference = kiln::to(token, Device::cpu()).to_vector<int64_t>();
      std::vector<int64_t> predicted =
          kiln::to(argmax(logits.back().detach()), Device::cpu()).to_vector<int64_t>();
      std::vector<double> coin = uniform({batch}, 0, 1, DType::f64).to_vector<double>();
      for (int64_t b = 0; b < batch; ++b) {
        if (coin[b] >= teacher_forcing) reference[b] = predicted[b];
      }
      token = kiln::to(from_vector(reference, {batch}), target_in.device());
    }
  }
  return stack(logits, 0);
}

Tensor Seq2Seq::loss(const Tensor& logits, const Tensor& target_out, const Tensor& target_mask,
                     double label_smoothing, const HostCopies& host) const {
  int64_t vocab = logits.size(-1);
  return cross_entropy(reshape(logits, {-1, vocab}), reshape(target_out, {-1}),
                       {-1, label_smoothing, Reduction::mean},
                       reshape(kiln::to(target_mask, logits.dtype()), {-1}), host.target_out);
}

namespace {

// A tensor's values as f64 on the host: from host_copy (a CPU tensor holding the same values),
// which costs no wait for the device, or else read back.
std::vector<double> host_values(const Tensor& values, const Tensor& host_copy, const char* what) {
  if (!host_copy.defined()) return kiln::to(values, DType::f64).to_vector<double>();
  KILN_CHECK(host_copy.device().is_cpu() && host_copy.numel() == values.numel(),
             "Seq2Seq::teacher_forced_loss: the host copy of the ", what,
             " must be a cpu tensor with the ", values.numel(), " values of ", values.describe(),
             ", got ", host_copy.describe());
  const Tensor f64 = kiln::to(host_copy, DType::f64);
  const double* data = f64.data<double>();  // host memory: no sync
  return std::vector<double>(data, data + f64.numel());
}

}  // namespace

Tensor Seq2Seq::teacher_forced_loss(const EncoderOutput& enc, const Tensor& target_in,
                                    const Tensor& target_out, const Tensor& target_mask,
                                    double teacher_forcing, double label_smoothing,
                                    const HostCopies& host) const {
  KILN_CHECK(target_in.dim() == 2, "Seq2Seq::teacher_forced_loss: target must be [T, B] ids, got ",
             target_in.describe());
  KILN_CHECK(target_out.shape() == target_in.shape() && target_mask.shape() == target_in.shape(),
             "Seq2Seq::teacher_forced_loss: target_in ", target_in.describe(), ", target_out ",
             target_out.describe(), " and target_mask ", target_mask.describe(),
             " must have one shape");
  if (teacher_forcing < 1.0 || host.fixed_shapes) {
    return loss(decode_teacher(enc, target_in, teacher_forcing, host), target_out, target_mask,
                label_smoothing, host);
  }
  // The real positions (flat t * B + b) with their targets and mask weights, on the host.
  const std::vector<double> mask = host_values(target_mask, host.target_mask, "target mask");
  const std::vector<double> out = host_values(target_out, host.target_out, "target");
  std::vector<int64_t> rows, targets;
  std::vector<double> weights;
  for (size_t i = 0; i < mask.size(); ++i) {
    if (mask[i] == 0) continue;
    rows.push_back(static_cast<int64_t>(i));
    targets.push_back(static_cast<int64_t>(out[i]));
    weights.push_back(mask[i]);
  }
  if (rows.empty()) {  // nothing real: the plain path gives the mean over no tokens
    return loss(decode_teacher(enc, target_in, 1.0, host), target_out, target_mask,
                label_smoothing, host);
  }
  const Device device = target_in.device();
  const int64_t count = static_cast<int64_t>(rows.size());
  const Tensor host_rows = from_vector(rows, {count});
  const Tensor host_targets = from_vector(targets, {count});
  // Padding that trails every target is never read by a real position, so the decoder may skip
  // it as the encoder skips the source's: a padded step keeps its state, and on the CPU its rows
  // of the layers' products are not computed (gru_layer, lstm_layer). A mask with a padded
  // position before a real one (a caller's own weights) leaves every step computed.
  const int64_t steps = target_in.size(0), batch = target_in.size(1);
  std::vector<int64_t> lengths(static_cast<size_t>(batch), 0);
  bool trailing = count < steps * batch;
  for (int64_t t = 0; t < steps && trailing; ++t) {
    for (int64_t b = 0; b < batch; ++b) {
      const bool real = mask[static_cast<size_t>(t * batch + b)] != 0;
      if (real && lengths[static_cast<size_t>(b)] < t) trailing = false;
      if (real) ++lengths[static_cast<size_t>(b)];
    }
  }
  Tensor target_lengths, step_mask;
  if (trailing) {
    std::vector<double> steps_real(mask.size());
    for (size_t i = 0; i < mask.size(); ++i) steps_real[i] = mask[i] != 0 ? 1.0 : 0.0;
    target_lengths = kiln::to(from_vector(lengths, {batch}), device);
    step_mask =
        kiln::to(kiln::to(from_vector(steps_real, {steps, batch}), enc.init_h.dtype()), device);
  }
  const Tensor hidden = teacher_hidden(enc, target_in, host, target_lengths, step_mask);
  const Tensor every_row = reshape(hidden, {-1, hidden.size(-1)});
  // A batch without padding has every position real, in order: its rows are the states as they
  // are, and the gather with its gradient's scatter is skipped (27 us of a small GRU step).
  const Tensor real =
      count == every_row.size(0)
          ? every_row
          : embedding(every_row, kiln::to(host_rows, device), -1, host_rows);  // [count, H]
  Tensor logits = decoder_->dense->forward(real);
  return cross_entropy(logits, kiln::to(host_targets, device), {-1, label_smoothing, Reduction::mean},
                       kiln::to(from_vector(weights, {count}, device), logits.dtype()), host_targets);
}

namespace {
// Rows `index` [N] of every layer of a state [L, B, H], as one gather of L * N rows from the state
// viewed as [L * B, H] (layer l's row b is row l * B + b). A gather along dim 1 between two
// transposes copied the state twice more (traced on a 25 ms beam-5 step of 320 rows: 334-804 us
// for the three copies, 88-275 us for the one gather).
// The flat ids are made on the host: the searches make `index` there, and read it there anyway.
class StateRows {
 public:
  StateRows(const Tensor& index, int64_t layers, int64_t batch, Device device) : layers_(layers) {
    const std::vector<int64_t> rows = kiln::to(index, DType::i64).to_vector<int64_t>();
    std::vector<int64_t> flat;
    flat.reserve(rows.size() * static_cast<size_t>(layers));
    for (int64_t layer = 0; layer < layers; ++layer) {
      for (size_t n = 0; n < rows.size(); ++n) {
        KILN_CHECK(rows[n] >= 0 && rows[n] < batch, "Seq2Seq::select_rows: index ", rows[n],
                   " at position ", n, " is out of range for a batch of ", batch, " rows");
        flat.push_back(layer * batch + rows[n]);
      }
    }
    host_flat_ = from_vector(flat, {static_cast<int64_t>(flat.size())});
    flat_ = kiln::to(host_flat_, device);
  }
  Tensor operator()(const Tensor& state) const {
    if (!state.defined()) return state;
    const int64_t hidden = state.size(2);
    const Tensor all_rows = reshape(state, {state.size(0) * state.size(1), hidden});
    // The host ids for the gather's range check: it reads nothing back from a device.
    return reshape(embedding(all_rows, flat_, -1, host_flat_), {layers_, -1, hidden});
  }

 private:
  int64_t layers_;
  Tensor host_flat_, flat_;
};
}  // namespace

EncoderOutput Seq2Seq::select_rows(const EncoderOutput& enc, const Tensor& index) {
  auto rows = [&](const Tensor& t) { return t.defined() ? index_select(t, 0, index) : t; };
  const StateRows state_rows(index, enc.init_h.size(0), enc.init_h.size(1), enc.init_h.device());
  return {rows(enc.keys),         rows(enc.key_proj),      rows(enc.source_pad),
          state_rows(enc.init_h), state_rows(enc.init_c),  rows(enc.context),
          enc.decoder_weights,    rows(enc.context_gates), enc.embedding_gates};
}

DecoderState Seq2Seq::select_rows(const DecoderState& state, const Tensor& index) {
  const StateRows state_rows(index, state.h.size(0), state.h.size(1), state.h.device());
  return {state_rows(state.h), state_rows(state.c)};
}

}  // namespace kiln::seq2seq
