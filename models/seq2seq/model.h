// The RNN encoder-decoder of d2l.ai (chapter "Sequence-to-Sequence Learning"), with optional
// additive (Bahdanau) or dot / general (Luong) attention. Built only from kiln's public nn API.
//
//   encoder:  Embedding -> multi-layer GRU/LSTM (optionally bidirectional) over the padded source;
//             padded steps keep the state, so the final state is each sentence's own.
//   decoder:  initial state = the encoder's final state (projected to hidden_size when the
//             encoder is bidirectional); without attention every step's input is
//             [embedding(y_{t-1}); context], context = the encoder's top-layer final state, fixed
//             for the whole decoding (d2l), also at inference; with attention the context is
//             recomputed each step from the decoder's top-layer state over the encoder outputs,
//             padding masked; then Linear(hidden -> target vocab).
// Parameter names: encoder.embedding.weight, encoder.rnn.weight_ih_l0, ..., bridge.weight,
// decoder.embedding.weight, decoder.rnn.*, decoder.attention.*, decoder.dense.{weight,bias}.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "models/seq2seq/config.h"
#include "nn/nn.h"

namespace kiln::seq2seq {

struct EncoderOutput {
  // With attention only (undefined without: nothing reads them, and making them cost two copies
  // and their gradient in every training step):
  Tensor keys;        // [B, S, Hk] encoder outputs, batch-major (Hk = hidden * directions)
  Tensor key_proj;    // [B, S, A] W_k keys, once per sentence (additive attention only)
  Tensor source_pad;  // [B, S] 1 where the source is padding (attention mask)
  Tensor init_h;      // [L, B, H] decoder initial state
  Tensor init_c;      // [L, B, H] (LSTM)
  Tensor context;     // [B, H] the fixed context of the attention-free decoder
  // Set by Seq2Seq::prepare_decoding (inference), shared by all rows: the decoder's weights per
  // layer, with their transposes (RnnWeights::w_ih_t, w_hh_t) where those pay. Without attention,
  // layer 0's input weight is for the embedding part alone, [G, E], and context_gates [B, G]
  // holds the context's share of its input gates (one row per sentence).
  std::vector<RnnWeights> decoder_weights;
  Tensor context_gates;
  // [V, G] (DecodingWeights::embedding_gates): layer 0's input gates of each target word's
  // embedding, looked up per step; then layer 0's input weight is for the context part alone (with
  // attention) or has no columns (without). Undefined when decoding projects the embedding per
  // step.
  Tensor embedding_gates;
};

struct DecoderState {
  Tensor h, c;  // [L, B, H]
};

// Rows of the output layer (decoder.dense) prepared for decoding: a vocabulary shortlist's,
// whose logits decode_step then computes alone (Seq2Seq::output_rows, once per batch), or every
// row (also DecodingWeights::output, once per model). weight_t, when the transposed copy pays
// (see prepare_decoding), is weight^T [H, K], which the step's product then reads untransposed.
struct OutputRows {
  Tensor weight, bias;  // [K, H], [K]
  Tensor weight_t;      // [H, K] or undefined
  // decode_step returns the product alone and the caller adds `bias` where it reads the logits
  // (log_softmax_topk(x, k, bias)): the add's pass over [rows, K] is saved.
  bool leave_bias = false;
};

// Which copies Seq2Seq::decoding_weights makes (Seq2Seq::decoding_copies decides what pays).
struct DecodingCopies {
  std::vector<bool> layer_transposes;  // per decoder layer: W_ih^T and W_hh^T
  bool output_transpose = false;       // the output layer's weight^T
  bool embedding_table = false;        // DecodingWeights::embedding_gates, encoder_embedding_gates
  auto tied() const { return std::tie(layer_transposes, output_transpose, embedding_table); }
  bool operator==(const DecodingCopies& other) const { return tied() == other.tied(); }
  bool operator<(const DecodingCopies& other) const { return tied() < other.tied(); }
};

// The decoder's weights as prepared decoding reads them (Seq2Seq::decoding_weights), taken from
// the model's weights at one moment: each layer's weights with transposed copies where those pay,
// layer 0's input weight cut to its embedding columns and the context's columns transposed
// (decoders without attention), and the output layer's rows. The copies cost as much as a small
// batch's whole decoding (a 24 MB output layer's transpose is half of a one-sentence batch's
// time), so whoever decodes many batches on unchanged weights keeps them: DecodingWeightsCache.
struct DecodingWeights {
  std::vector<RnnWeights> layers;  // per decoder layer; empty for a model in training mode
  // The encoder's, per layer and direction, with W_hh^T (on the CPU, whose recurrent products
  // read it untransposed, kernels/rnn_steps.h); empty in training mode.
  std::vector<RnnWeights> encoder_layers;
  Tensor context_w_t;  // [H, G] (no attention) or undefined
  // [V, G] = E W_e^T, every target word's embedding times layer 0's input weight for the
  // embedding, or undefined (decoding_copies decides). A step then looks up its rows' input gates
  // instead of a product of [rows, E] x [E, G]: 5.7% of a greedy step's FLOPs (E = 256, H = 512,
  // V = 8,000). It costs V x E x G multiply-adds once (6.3 GFLOP: 30 ms at 200 GFLOP/s) and
  // V x G floats (49 MB), which a run of batched decodes repays within a few batches.
  Tensor embedding_gates;
  // The same for the encoder's first layer, [V_source, G] per direction: E_source W_ih^T, made with
  // embedding_gates. Encoding then looks up each token's input gates instead of a product of
  // [S x B, E] x [E, G] (E = 256, H = 512: 2.9% of a greedy decode's FLOPs, 1.5 of 35 GFLOP).
  std::vector<Tensor> encoder_embedding_gates;
  OutputRows output;  // every target id's row
};

// Additive attention: score(q, k) = w_v^T tanh(W_q q + W_k k); general: q^T W k; dot: q^T k.
class AttentionLayer : public nn::Module {
 public:
  AttentionLayer(Attention kind, int64_t query_size, int64_t key_size, int64_t attention_size,
                 Options options);
  // keys [B, S, Hk] -> the per-sentence precomputation (additive: W_k keys; others: undefined).
  Tensor project_keys(const Tensor& keys) const;
  // query [B, H] -> (context [B, Hk], weights [B, S]) with padded keys masked out.
  std::pair<Tensor, Tensor> forward(const Tensor& query, const EncoderOutput& enc) const;

 private:
  Attention kind_;
  std::shared_ptr<nn::Linear> w_q_, w_k_, w_v_;
};

// Holders that give the parameters their names (encoder.*, decoder.*).
struct Encoder : nn::Module {
  Encoder(const ModelConfig& config, Options options);
  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::Recurrent> rnn;
};
struct Decoder : nn::Module {
  Decoder(const ModelConfig& config, Options options);
  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::Recurrent> rnn;
  std::shared_ptr<AttentionLayer> attention;  // null without attention
  std::shared_ptr<nn::Linear> dense;
};

// CPU copies of a batch's ids and lengths, when the caller has them (the trainer's batches keep
// what they uploaded). The ops that need index values on the host (the embeddings' range checks and
// gradient sort, the length mask, the loss's target check) read these instead of copying the
// device tensors back, so a training step on a GPU does not wait for the device. Each must hold the
// values of its device tensor; any may be undefined (that tensor is then read back).
struct HostCopies {
  Tensor source, source_lengths, target_in, target_out, target_mask;
  // The step is being captured into a CUDA graph (kernels/cuda_graph.h), to be replayed on other
  // batches of the same shape: take only paths whose shapes follow from the batch's shape (the
  // loss over every position, weighted by the mask, not over the real ones gathered).
  bool fixed_shapes = false;
};

class Seq2Seq : public nn::Module {
 public:
  explicit Seq2Seq(const ModelConfig& config, Options options = {});
  const ModelConfig& config() const { return config_; }

  // source: [S, B] ids, source_lengths: [B]. With `prepared` (inference), the encoder's RNN reads
  // its prepared weights (DecodingWeights::encoder_layers).
  EncoderOutput encode(const Tensor& source, const Tensor& source_lengths,
                       const HostCopies& host = {},
                       const DecodingWeights* prepared = nullptr) const;
  DecoderState initial_state(const EncoderOutput& enc) const;
  // Teacher forcing over a whole target_in [T, B] -> logits [T, B, V]. With teacher_forcing < 1
  // (scheduled sampling) each row's input at a step is, with probability 1 - teacher_forcing, the
  // model's own previous argmax instead of the reference token.
  Tensor decode_teacher(const EncoderOutput& enc, const Tensor& target_in,
                        double teacher_forcing = 1.0, const HostCopies& host = {}) const;
  // Inference: the per-sentence work of decode_step done once. Without attention, the fixed
  // context's share of the decoder's layer-0 input projection (d2l feeds [embedding; context] every
  // step), so each step projects only the embedding. With attention the keys are already projected
  // once by encode. On the CPU, when each step's products go to oneDNN (`rows` of them per step,
  // kernels/gemm.h), the decoder's weights transposed once, which those products read about twice
  // as fast (kernels/rnn_steps.h). No gradient flows through what this adds; a model in training
  // mode is left as it is.
  void prepare_decoding(EncoderOutput& enc, int64_t rows) const;
  // The same in two parts: the weights, made once for many batches (the copies decided by
  // decoding_copies), and the per-batch work on them (the context's gates).
  void prepare_decoding(EncoderOutput& enc, const DecodingWeights& weights) const;
  // Which prepared copies pay for decoding steps on `rows` rows (DecodingCopies). The embedding
  // table only when the copies are `kept` for many batches (DecodingWeightsCache) and from
  // kEmbeddingTableRows rows, a batched decode: one batch, or a one-sentence decode, would not
  // repay it in thousands of steps.
  DecodingCopies decoding_copies(int64_t rows, bool kept = false) const;
  static constexpr int64_t kEmbeddingTableRows = 32;
  DecodingWeights decoding_weights(const DecodingCopies& copies) const;
  // One step: token [B] -> logits [B, V]; `state` advances. attention_weights gets [B, S] if given.
  // With `rows`, the logits are [B, K] over the shortlist's target ids only.
  Tensor decode_step(const EncoderOutput& enc, const Tensor& token, DecoderState& state,
                     Tensor* attention_weights = nullptr, const OutputRows* rows = nullptr) const;
  // The output layer's rows of target ids `ids` [K] (on the model's device), or every row when
  // `ids` is undefined, for steps of `rows` rows (whether weight_t pays, as in prepare_decoding).
  OutputRows output_rows(const Tensor& ids, int64_t rows) const;
  // Mean cross-entropy per real target token (mask [T, B]).
  Tensor loss(const Tensor& logits, const Tensor& target_out, const Tensor& target_mask,
              double label_smoothing = 0.0, const HostCopies& host = {}) const;
  // loss(decode_teacher(enc, target_in, ...), target_out, target_mask, ...), the training loss,
  // with the output layer and the softmax run on the real target tokens alone (target_mask != 0):
  // the logits of padded positions, a fifth of a batch of sentences whose lengths vary, are never
  // computed. The positions are read from host.target_mask and host.target_out when given, else
  // from the device. Scheduled sampling (teacher_forcing < 1) needs every step's logits and takes
  // the plain path, and so does host.fixed_shapes.
  Tensor teacher_forced_loss(const EncoderOutput& enc, const Tensor& target_in,
                             const Tensor& target_out, const Tensor& target_mask,
                             double teacher_forcing = 1.0, double label_smoothing = 0.0,
                             const HostCopies& host = {}) const;

  // Rows `index` [N] of every batch-indexed tensor: expands a batch into beams or reorders them.
  static EncoderOutput select_rows(const EncoderOutput& enc, const Tensor& index);
  static DecoderState select_rows(const DecoderState& state, const Tensor& index);

 private:
  Tensor embed_step_input(const Tensor& embedded, const Tensor& context) const;
  // decode_step's plain (unprepared) path from the step's embedded tokens [B, E], up to the
  // output layer: the top layer's output [B, H]. With target_lengths and this step's row of their
  // mask ([1, B]), a padded row keeps its state (teacher_hidden).
  Tensor decode_embedded(const EncoderOutput& enc, const Tensor& embedded, DecoderState& state,
                         Tensor* attention_weights, const Tensor& target_lengths = Tensor(),
                         const Tensor& step_mask = Tensor()) const;
  // Teacher forcing's top-layer outputs [T, B, H], before the output layer. With target_lengths
  // and step_mask (their [T, B] mask, padding trailing every target), the decoder skips the
  // padded steps: their states pass through (outputs 0 without attention), the real ones are
  // unchanged.
  Tensor teacher_hidden(const EncoderOutput& enc, const Tensor& target_in, const HostCopies& host,
                        const Tensor& target_lengths = Tensor(),
                        const Tensor& step_mask = Tensor()) const;
  // decoder.dense over `hidden` [B, H], or its prepared rows.
  Tensor project_output(const Tensor& hidden, const OutputRows* rows) const;

  ModelConfig config_;
  std::shared_ptr<Encoder> encoder_;
  std::shared_ptr<Decoder> decoder_;
  std::shared_ptr<nn::Linear> bridge_;  // bidirectional encoder only
};

// Prepared decoding weights kept across batches: one entry per model, device and set of
// copies (the batch's rows decide which pay, so a run of batches needs one or two). An entry
// holds copies of the weights as they were when it was made, so it serves only while they do not
// change (a load_state_dict or an optimizer step writes them in place, unseen here): a Translator
// keeps one for the models it loaded, and the trainer makes a new Translator for each validation.
// Safe to share between threads.
class DecodingWeightsCache {
 public:
  std::shared_ptr<const DecodingWeights> get(const Seq2Seq& model, int64_t rows);
  void clear();

 private:
  // model, device, the copies, whether the model was in training mode (then there are no layers)
  using Key = std::tuple<const Seq2Seq*, std::string, DecodingCopies, bool>;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const DecodingWeights>> entries_;
};

}  // namespace kiln::seq2seq
