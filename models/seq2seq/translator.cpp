// The Translator: a checkpoint loaded for translation and evaluation (see translator.h).
#include "models/seq2seq/translator.h"

#include <algorithm>
#include <tuple>

#include "core/grad_mode.h"
#include "models/data/batching.h"
#include "models/data/tokenizer.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/prepare.h"

namespace kiln::seq2seq {

Translator Translator::load(const std::string& checkpoint, const std::string& device_name) {
  const std::string dir = checkpoint_folder(checkpoint);  // a swap a crash cut short included
  Translator t;
  t.options = load_checkpoint_options(dir, "checkpoint");
  t.device = Device::parse(device_name.empty() ? t.options.device : device_name);
  std::tie(t.source_tokenizer, t.target_tokenizer) = load_tokenizers(t.options, dir);
  std::tie(t.source_vocab, t.target_vocab) = load_checkpoint_vocabs(dir);
  KILN_CHECK(t.source_vocab.size() == t.options.model.source_vocab &&
                 t.target_vocab.size() == t.options.model.target_vocab,
             dir, ": the vocabulary files (", t.source_vocab.size(), ", ", t.target_vocab.size(),
             " tokens) do not match config.json (", t.options.model.source_vocab, ", ",
             t.options.model.target_vocab, ")");
  t.model = std::make_shared<Seq2Seq>(t.options.model);
  load_model_weights(dir, *t.model);
  t.model->to(t.device);
  t.model->eval();
  return t;
}

namespace {
// One batch of encoded sentences in input order (no shuffling, no bucketing).
data::Batch batch_of(const Translator& t, std::vector<data::EncodedPair> encoded) {
  data::BatchOptions options;
  options.batch_size = static_cast<int64_t>(encoded.size());
  options.bucket_by_length = false;
  options.shuffle = false;
  return data::make_batches(encoded, options, t.device).at(0);
}
}  // namespace

std::vector<std::vector<Hypothesis>> Translator::translate(
    const std::vector<std::string>& sentences, int64_t beam_size, int64_t n_best,
    double length_penalty, bool keep_attention) const {
  // A sentence without tokens (a blank input line) has nothing to translate: its result is one
  // empty hypothesis (to_text gives ""), and the others are batched without it.
  std::vector<std::vector<Hypothesis>> out(sentences.size(), {Hypothesis{}});
  std::vector<size_t> rows_of;  // sentence index of each encoded sentence
  std::vector<data::EncodedPair> encoded;
  for (size_t i = 0; i < sentences.size(); ++i) {
    std::vector<std::string> tokens = source_tokenizer->tokenize(sentences[i]);
    if (tokens.empty()) continue;
    if (static_cast<int64_t>(tokens.size()) > options.max_source_length) {
      tokens.resize(static_cast<size_t>(options.max_source_length));  // the length cap
    }
    std::vector<int64_t> ids = source_vocab.encode(tokens);
    rows_of.push_back(i);
    encoded.push_back({std::move(ids), {}});
  }
  const size_t chunk = 64;
  for (size_t begin = 0; begin < encoded.size(); begin += chunk) {
    const size_t end = std::min(encoded.size(), begin + chunk);
    data::Batch batch = batch_of(*this, {encoded.begin() + begin, encoded.begin() + end});
    int64_t rows = static_cast<int64_t>(end - begin);
    SearchOptions search{
        model->config().bos_id, model->config().eos_id,
        max_lengths_for(batch.source_lengths, options.max_length_a, options.max_length_b)};
    size_t row = begin;
    if (beam_size <= 1) {
      Seq2SeqStepper stepper(*model, batch.source, batch.source_lengths, 1, keep_attention);
      for (Hypothesis& h :
           greedy_search(stepper, rows, search, keep_attention ? &stepper : nullptr))
        out[rows_of[row++]] = {std::move(h)};
    } else {
      Seq2SeqStepper stepper(*model, batch.source, batch.source_lengths, beam_size);
      for (auto& list : beam_search(stepper, rows, search, {beam_size, length_penalty, n_best}))
        out[rows_of[row++]] = std::move(list);
    }
  }
  return out;
}

int64_t Translator::count_long_sources(const std::vector<std::string>& sentences) const {
  int64_t count = 0;
  for (const std::string& s : sentences) {
    count += static_cast<int64_t>(source_tokenizer->tokenize(s).size()) > options.max_source_length;
  }
  return count;
}

int64_t Translator::count_long_pairs(const std::vector<data::SentencePair>& pairs,
                                     bool strict) const {
  data::TokenizedPairs tokens = tokenize_with(*source_tokenizer, *target_tokenizer, pairs);
  return cut_long_pairs(tokens, options.max_source_length, options.max_target_length, strict,
                        "eval");
}

std::string Translator::to_text(const Hypothesis& hypothesis) const {
  return target_tokenizer->detokenize(target_vocab.decode(hypothesis.tokens));
}

double Translator::mean_nll(const std::vector<data::SentencePair>& pairs) const {
  data::TokenizedPairs tokens = tokenize_with(*source_tokenizer, *target_tokenizer, pairs);
  cut_long_pairs(tokens, this->options.max_source_length, this->options.max_target_length, false,
                 "eval");
  data::BatchOptions options;
  options.shuffle = false;
  options.batch_size = 64;
  double total = 0;
  int64_t count = 0;
  NoGradGuard no_grad;
  for (const data::Batch& b : data::make_batches(
           data::encode_pairs(tokens.source, tokens.target, source_vocab, target_vocab), options,
           device)) {
    Tensor logits = model->decode_teacher(model->encode(b.source, b.source_lengths), b.target_in);
    total += model->loss(logits, b.target_out, b.target_mask).item() * b.num_target_tokens;
    count += b.num_target_tokens;
  }
  return count ? total / count : 0.0;
}

}  // namespace kiln::seq2seq
