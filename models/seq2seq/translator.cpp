// The Translator: a checkpoint loaded for translation and evaluation (see translator.h).
#include "models/seq2seq/translator.h"

#include <algorithm>
#include <numeric>
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
  t.folder = checkpoint;
  t.lexical = LexicalTable::load_if_present(dir);
  KILN_CHECK(t.lexical.empty() || (t.lexical.source_vocab == t.source_vocab.size() &&
                                   t.lexical.target_vocab == t.target_vocab.size()),
             dir, "/", LexicalTable::file_name, ": made for vocabularies of ",
             t.lexical.source_vocab, " and ", t.lexical.target_vocab,
             " tokens, the checkpoint's have ", t.source_vocab.size(), " and ",
             t.target_vocab.size(), "; build it again with kiln shortlist --checkpoint ",
             checkpoint);
  {
    nn::SkipInitScope overwritten_next;  // load_model_weights sets every parameter
    t.model = std::make_shared<Seq2Seq>(t.options.model);
  }
  load_model_weights(dir, *t.model);
  t.model->to(t.device);
  t.model->eval();
  return t;
}

Translator Translator::load(const std::vector<std::string>& checkpoints,
                            const std::string& device_name) {
  KILN_CHECK(!checkpoints.empty(), "Translator::load: no checkpoint folder given");
  Translator t = load(checkpoints[0], device_name);
  for (size_t i = 1; i < checkpoints.size(); ++i) {
    Translator other = load(checkpoints[i], t.device.str());
    // The members' log-probabilities are averaged token id by token id, and they all read the
    // same source ids: any difference in vocabulary or tokenizer would mix unrelated tokens.
    const auto same = [&](const data::Vocab& a, const data::Vocab& b, const char* side) {
      KILN_CHECK(a == b, "ensemble: ", checkpoints[i], " has a different ", side,
                 " vocabulary than ", checkpoints[0], " (", b.size(), " tokens against ", a.size(),
                 "); the checkpoints of an ensemble must share their vocabularies");
    };
    same(t.source_vocab, other.source_vocab, "source");
    same(t.target_vocab, other.target_vocab, "target");
    KILN_CHECK(t.options.tokenizer == other.options.tokenizer, "ensemble: ", checkpoints[i],
               " uses the ", other.options.tokenizer, " tokenizer, ", checkpoints[0], " the ",
               t.options.tokenizer, " one; the checkpoints of an ensemble must share it");
    t.ensemble.push_back(other.model);
  }
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

// The batch's stepper: the model alone, or every model of the ensemble averaged.
std::unique_ptr<Stepper> stepper_for(const Translator& t, const data::Batch& batch, int64_t repeat,
                                     bool keep_attention, const Tensor& shortlist) {
  const auto member = [&](const Seq2Seq& model) {
    bool attention = keep_attention && model.config().attention != Attention::none;
    return std::make_unique<Seq2SeqStepper>(model, batch.source, batch.source_lengths, repeat,
                                            attention, shortlist, t.prepared.get());
  };
  if (t.ensemble.empty()) return member(*t.model);
  std::vector<std::unique_ptr<Stepper>> members;
  members.push_back(member(*t.model));
  for (const auto& model : t.ensemble) members.push_back(member(*model));
  return std::make_unique<EnsembleStepper>(std::move(members));
}
}  // namespace

bool Translator::has_attention() const {
  bool any = model->config().attention != Attention::none;
  for (const auto& m : ensemble) any = any || m->config().attention != Attention::none;
  return any;
}

std::vector<std::string> Translator::source_tokens(const std::string& sentence) const {
  std::vector<std::string> tokens = source_tokenizer->tokenize(sentence);
  if (static_cast<int64_t>(tokens.size()) > options.max_source_length) {
    tokens.resize(static_cast<size_t>(options.max_source_length));  // the length cap
  }
  return tokens;
}

std::vector<std::vector<Hypothesis>> Translator::translate(
    const std::vector<std::string>& sentences, int64_t beam_size, int64_t n_best,
    double length_penalty, bool keep_attention) const {
  TranslateOptions how;
  how.beam_size = beam_size;
  how.n_best = n_best;
  how.length_penalty = length_penalty;
  how.keep_attention = keep_attention;
  return translate(sentences, how);
}

void Translator::check(const TranslateOptions& how) const {
  KILN_CHECK(how.batch_size >= 1, "translate: batch_size must be >= 1, got ", how.batch_size);
  KILN_CHECK(how.beam_size >= 1 && how.n_best >= 1 && how.n_best <= how.beam_size,
             "translate: need 1 <= n_best <= beam_size, got n_best ", how.n_best, " and beam_size ",
             how.beam_size);
  KILN_CHECK(how.length_penalty >= 0, "translate: length_penalty must be >= 0, got ",
             how.length_penalty);
  KILN_CHECK(!how.keep_attention || has_attention(),
             "translate: attention was asked of a model without attention");
  KILN_CHECK(how.shortlist >= 0, "translate: shortlist must be >= 1 (0: off), got ", how.shortlist);
  KILN_CHECK(how.shortlist == 0 || !lexical.empty(), "--shortlist: ", folder,
             " has no lexical table (", LexicalTable::file_name,
             "; checkpoints saved before the shortlist existed lack it): build it from the run's ",
             "training data with kiln shortlist --checkpoint ", folder);
}

std::vector<std::vector<Hypothesis>> Translator::translate(
    const std::vector<std::string>& sentences, const TranslateOptions& how) const {
  check(how);
  // A sentence without tokens (a blank input line) has nothing to translate: its result is one
  // empty hypothesis (to_text gives ""), and the others are batched without it.
  std::vector<std::vector<Hypothesis>> out(sentences.size(), {Hypothesis{}});
  std::vector<size_t> rows_of;  // sentence index of each encoded sentence
  std::vector<data::EncodedPair> encoded;
  for (size_t i = 0; i < sentences.size(); ++i) {
    std::vector<std::string> tokens = source_tokens(sentences[i]);
    if (tokens.empty()) continue;
    rows_of.push_back(i);
    encoded.push_back({source_vocab.encode(tokens), {}});
  }
  // Shortest first (stable: equal lengths keep input order), so each batch pads little.
  std::vector<size_t> order(encoded.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return encoded[a].source.size() < encoded[b].source.size();
  });
  const size_t chunk = static_cast<size_t>(how.batch_size);
  for (size_t begin = 0; begin < order.size(); begin += chunk) {
    const size_t end = std::min(order.size(), begin + chunk);
    std::vector<data::EncodedPair> members;
    std::vector<std::vector<int64_t>> member_sources;
    for (size_t j = begin; j < end; ++j) {
      members.push_back(encoded[order[j]]);
      member_sources.push_back(encoded[order[j]].source);
    }
    data::Batch batch = batch_of(*this, std::move(members));
    int64_t rows = static_cast<int64_t>(end - begin);
    SearchOptions search{
        model->config().bos_id, model->config().eos_id,
        max_lengths_for(batch.source_lengths, options.max_length_a, options.max_length_b),
        how.keep_attention};
    Tensor shortlist;  // the batch's candidate target ids, or undefined: all of them
    if (how.shortlist > 0) {
      search.shortlist = lexical.candidates(member_sources, how.shortlist);
      shortlist = kiln::to(
          from_vector(search.shortlist, {static_cast<int64_t>(search.shortlist.size())}), device);
    }
    std::vector<std::vector<Hypothesis>> lists;
    if (how.beam_size <= 1) {
      std::unique_ptr<Stepper> stepper =
          stepper_for(*this, batch, 1, how.keep_attention, shortlist);
      for (Hypothesis& h : greedy_search(*stepper, rows, search)) {
        h.score = length_normalized(h.log_prob, h.tokens.size(), how.length_penalty);
        lists.push_back({std::move(h)});
      }
    } else {
      std::unique_ptr<Stepper> stepper =
          stepper_for(*this, batch, how.beam_size, how.keep_attention, shortlist);
      lists = beam_search(*stepper, rows, search, {how.beam_size, how.length_penalty, how.n_best});
    }
    // Attention rows span the batch's longest source: keep the sentence's own columns.
    std::vector<int64_t> lengths =
        kiln::to(kiln::to(batch.source_lengths, DType::i64), Device::cpu()).to_vector<int64_t>();
    for (size_t c = 0; c < lists.size(); ++c) {
      for (Hypothesis& h : lists[c]) {
        for (std::vector<float>& row : h.attention) row.resize(static_cast<size_t>(lengths[c]));
      }
      out[rows_of[order[begin + c]]] = std::move(lists[c]);
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

std::string Translator::to_text(const Hypothesis& hypothesis, const std::string& source) const {
  const std::vector<std::string> src = source_tokens(source);
  std::vector<std::string> words;
  for (size_t i = 0; i < hypothesis.tokens.size(); ++i) {
    const int64_t id = hypothesis.tokens[i];
    if (id == model->config().eos_id) break;
    if (id != data::Vocab::unk_id || src.empty()) {
      for (std::string& w : target_vocab.decode({id})) words.push_back(std::move(w));
      continue;
    }
    KILN_CHECK(i < hypothesis.attention.size(),
               "replace-unk: the hypothesis has no attention for its token ", i + 1,
               " (translate with keep_attention)");
    // The real source columns only: <eos>'s (the last) is no word to copy.
    const std::vector<float>& row = hypothesis.attention[i];
    const size_t columns = std::min(row.size(), src.size());
    words.push_back(src[std::max_element(row.begin(), row.begin() + columns) - row.begin()]);
  }
  return target_tokenizer->detokenize(words);
}

double Translator::mean_nll(const std::vector<data::SentencePair>& pairs) const {
  NllSum sum = total_nll(pairs);
  return sum.tokens ? sum.nll / sum.tokens : 0.0;
}

Translator::NllSum Translator::total_nll(const std::vector<data::SentencePair>& pairs) const {
  if (pairs.empty()) return {};
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
    const HostCopies host{b.host_source, b.host_source_lengths, b.host_target_in,
                          b.host_target_out, b.host_target_mask};
    Tensor loss = model->teacher_forced_loss(model->encode(b.source, b.source_lengths, host),
                                             b.target_in, b.target_out, b.target_mask, 1.0, 0.0,
                                             host);
    total += loss.item() * b.num_target_tokens;
    count += b.num_target_tokens;
  }
  return {total, count};
}

}  // namespace kiln::seq2seq
