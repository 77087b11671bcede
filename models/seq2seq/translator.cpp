// Data loading for training and the Translator: a checkpoint loaded for translation and evaluation.
#include <cmath>
#include <tuple>

#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/data/tasks.h"
#include "models/data/tokenizer.h"
#include "models/seq2seq/trainer.h"

namespace kiln::seq2seq {

data::Split load_data(const TrainOptions& o, const std::function<void(const std::string&)>& log) {
  data::ReadOptions read{!o.strict_data, o.max_pairs};
  std::vector<data::SentencePair> pairs;
  if (!o.task.empty()) {
    pairs = data::generate_task(o.task, o.task_size, o.seed);
  } else {
    data::Corpus corpus = o.data.empty() ? data::read_parallel(o.data_source, o.data_target, read)
                                         : data::read_tsv(o.data, read);
    if (corpus.skipped > 0 && log) {
      log("skipped " + std::to_string(corpus.skipped) + " bad line(s); first: " +
          (corpus.problems.empty() ? std::string("?") : corpus.problems[0]));
    }
    pairs = std::move(corpus.pairs);
  }
  int64_t total = static_cast<int64_t>(pairs.size());
  KILN_CHECK(total > 0, "train: the data has no usable sentence pairs");
  int64_t valid = o.valid_pairs, test = o.test_pairs, train = o.train_pairs;
  if (train < 0 && valid == 0 && test == 0 && o.valid_fraction > 0) {
    valid = std::max<int64_t>(1, static_cast<int64_t>(std::round(o.valid_fraction * total)));
  }
  if (train < 0) train = total - valid - test;
  return data::split_pairs(pairs, train, valid, test);
}

std::pair<std::shared_ptr<data::Tokenizer>, std::shared_ptr<data::Tokenizer>> load_tokenizers(const TrainOptions& o,
                                                                                              const std::string& dir) {
  if (o.tokenizer == "sentencepiece") {
    return {std::make_shared<data::SentencePieceTokenizer>(dir + "/source.spm.model"),
            std::make_shared<data::SentencePieceTokenizer>(dir + "/target.spm.model")};
  }
  return {std::make_shared<data::WordTokenizer>(), std::make_shared<data::WordTokenizer>()};
}

Translator Translator::load(const std::string& dir, const std::string& device_name) {
  Translator t;
  t.options = TrainOptions::from_json(data::read_text_file("checkpoint", dir + "/config.json"), dir + "/config.json");
  t.device = Device::parse(device_name.empty() ? t.options.device : device_name);
  std::tie(t.source_tokenizer, t.target_tokenizer) = load_tokenizers(t.options, dir);
  t.source_vocab = data::Vocab::load(dir + "/source_vocab.txt");
  t.target_vocab = data::Vocab::load(dir + "/target_vocab.txt");
  KILN_CHECK(t.source_vocab.size() == t.options.model.source_vocab && t.target_vocab.size() == t.options.model.target_vocab,
             dir, ": the vocabulary files (", t.source_vocab.size(), ", ", t.target_vocab.size(),
             " tokens) do not match config.json (", t.options.model.source_vocab, ", ", t.options.model.target_vocab, ")");
  t.model = std::make_shared<Seq2Seq>(t.options.model);
  t.model->load_state_dict(safetensors::load(dir + "/model.safetensors").tensors);
  t.model->to(t.device);
  t.model->eval();
  return t;
}

namespace {
// Encodes sentences as one batch in input order (no shuffling, no bucketing).
data::Batch batch_of(const Translator& t, const std::vector<std::string>& sentences) {
  std::vector<data::EncodedPair> encoded;
  for (const std::string& s : sentences) encoded.push_back({t.source_vocab.encode(t.source_tokenizer->tokenize(s)), {}});
  data::BatchOptions options;
  options.batch_size = static_cast<int64_t>(sentences.size());
  options.bucket_by_length = false;
  options.shuffle = false;
  return data::make_batches(encoded, options, t.device).at(0);
}
}  // namespace

std::vector<std::vector<Hypothesis>> Translator::translate(const std::vector<std::string>& sentences, int64_t beam_size,
                                                           int64_t n_best, double length_penalty,
                                                           bool keep_attention) const {
  std::vector<std::vector<Hypothesis>> out;
  const int64_t chunk = 64;
  for (size_t begin = 0; begin < sentences.size(); begin += chunk) {
    std::vector<std::string> part(sentences.begin() + begin,
                                  sentences.begin() + std::min(sentences.size(), begin + chunk));
    data::Batch batch = batch_of(*this, part);
    int64_t rows = static_cast<int64_t>(part.size());
    SearchOptions search{model->config().bos_id, model->config().eos_id,
                         max_lengths_for(batch.source_lengths, options.max_length_a, options.max_length_b)};
    if (beam_size <= 1) {
      Seq2SeqStepper stepper(*model, batch.source, batch.source_lengths, 1, keep_attention);
      for (Hypothesis& h : greedy_search(stepper, rows, search, keep_attention ? &stepper : nullptr)) out.push_back({h});
    } else {
      Seq2SeqStepper stepper(*model, batch.source, batch.source_lengths, beam_size);
      for (auto& list : beam_search(stepper, rows, search, {beam_size, length_penalty, n_best})) out.push_back(list);
    }
  }
  return out;
}

std::string Translator::to_text(const Hypothesis& hypothesis) const {
  return target_tokenizer->detokenize(target_vocab.decode(hypothesis.tokens));
}

double Translator::mean_nll(const std::vector<data::SentencePair>& pairs) const {
  data::TokenizedPairs tokens;
  for (const data::SentencePair& p : pairs) {
    tokens.source.push_back(source_tokenizer->tokenize(p.source));
    tokens.target.push_back(target_tokenizer->tokenize(p.target));
  }
  data::BatchOptions options;
  options.shuffle = false;
  options.batch_size = 64;
  double total = 0;
  int64_t count = 0;
  NoGradGuard no_grad;
  for (const data::Batch& b : data::make_batches(data::encode_pairs(tokens.source, tokens.target, source_vocab,
                                                                     target_vocab),
                                                  options, device)) {
    Tensor logits = model->decode_teacher(model->encode(b.source, b.source_lengths), b.target_in);
    total += model->loss(logits, b.target_out, b.target_mask).item() * b.num_target_tokens;
    count += b.num_target_tokens;
  }
  return count ? total / count : 0.0;
}

}  // namespace kiln::seq2seq
