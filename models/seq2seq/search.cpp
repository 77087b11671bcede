#include "models/seq2seq/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace kiln::seq2seq {

Seq2SeqStepper::Seq2SeqStepper(const Seq2Seq& model, const Tensor& source,
                               const Tensor& source_lengths, int64_t repeat, bool keep_attention,
                               const Tensor& shortlist, DecodingWeightsCache* prepared)
    : model_(model), repeat_(repeat), repeat_pending_(repeat > 1), keep_attention_(keep_attention) {
  NoGradGuard no_grad;
  // Every step's rows: each sentence `repeat` times (finished ones leave, so this is the most).
  const int64_t rows = source.size(1) * repeat;
  std::shared_ptr<const DecodingWeights> weights;
  if (prepared) {
    weights = prepared->get(model, rows);
  } else {
    DecodingCopies copies = model.decoding_copies(rows);
    // With a shortlist, the output layer's own rows are not read (output_rows transposes its).
    if (shortlist.defined()) copies.output_transpose = false;
    weights = std::make_shared<const DecodingWeights>(model.decoding_weights(copies));
  }
  output_rows_ = shortlist.defined() ? model.output_rows(to(shortlist, source.device()), rows)
                                     : weights->output;
  enc_ = model.encode(source, source_lengths, {}, weights.get());
  model.prepare_decoding(enc_, *weights);  // before the rows are repeated: once per sentence
  state_ = model.initial_state(enc_);
}

void Seq2SeqStepper::repeat_rows_if_pending() {
  if (!repeat_pending_) return;
  repeat_pending_ = false;
  std::vector<int64_t> index;
  for (int64_t b = 0; b < enc_.init_h.size(1); ++b) index.insert(index.end(), repeat_, b);
  const Tensor on_host = from_vector(index, {static_cast<int64_t>(index.size())});
  enc_ = Seq2Seq::select_rows(enc_, to(on_host, enc_.init_h.device()));
  state_ = Seq2Seq::select_rows(state_, on_host);  // its flat ids are made on the host
}

bool Seq2SeqStepper::first_step_one_row_per_sentence() {
  if (!repeat_pending_) return false;  // one row per sentence already, or it has stepped
  repeat_pending_ = false;
  return true;
}

StepTop Stepper::step_top(const Tensor& tokens, int64_t n) {
  NoGradGuard no_grad;
  Tensor log_probs = step(tokens);
  auto [values, ids] = topk(log_probs, n);
  return {values, ids, log_probs.size(1)};
}

Tensor Seq2SeqStepper::logits(const Tensor& tokens, bool add_bias) {
  repeat_rows_if_pending();
  OutputRows rows = output_rows_;
  rows.leave_bias = !add_bias;
  // Searches build token ids on the host; the model takes them on its own device.
  return model_.decode_step(enc_, kiln::to(tokens, enc_.init_h.device()), state_,
                            keep_attention_ ? &attention_ : nullptr, &rows);
}

Tensor Seq2SeqStepper::step(const Tensor& tokens) {
  NoGradGuard no_grad;
  return log_softmax(logits(tokens));
}

StepTop Seq2SeqStepper::step_top(const Tensor& tokens, int64_t n) {
  NoGradGuard no_grad;
  // The output layer's bias is added inside log_softmax_topk's read of the product: the same
  // values as the logits', without a pass over [rows, K] for the add.
  Tensor x = logits(tokens, /*add_bias=*/false);
  auto [values, ids] = log_softmax_topk(x, n, output_rows_.bias);
  return {values, ids, x.size(1)};
}

void Seq2SeqStepper::reorder(const Tensor& index) {
  NoGradGuard no_grad;
  repeat_rows_if_pending();
  Tensor on_device = kiln::to(index, enc_.init_h.device());
  // The `repeat` rows of a sentence hold the same encoder outputs, so when every row's parent is a
  // row of its own sentence (beam search's case) only the decoder state moves: gathering the keys
  // ([rows, S, H] per step) would copy them onto themselves.
  // A shorter index drops rows (finished sentences): the encoder outputs follow them.
  std::vector<int64_t> parents = kiln::to(index, Device::cpu()).to_vector<int64_t>();
  bool within_sentence = static_cast<int64_t>(parents.size()) == enc_.init_h.size(1);
  for (size_t i = 0; i < parents.size(); ++i) {
    within_sentence = within_sentence && parents[i] / repeat_ == static_cast<int64_t>(i) / repeat_;
  }
  if (!within_sentence) enc_ = Seq2Seq::select_rows(enc_, on_device);
  state_ = Seq2Seq::select_rows(state_, index);  // its flat ids are made on the host
}

EnsembleStepper::EnsembleStepper(std::vector<std::unique_ptr<Stepper>> members)
    : members_(std::move(members)) {
  KILN_CHECK(!members_.empty(), "EnsembleStepper: needs at least one member");
}

Tensor EnsembleStepper::step(const Tensor& tokens) {
  NoGradGuard no_grad;
  Tensor sum = members_[0]->step(tokens);
  if (members_.size() == 1) return sum;  // bit for bit the single model
  for (size_t m = 1; m < members_.size(); ++m) sum = add(sum, members_[m]->step(tokens));
  return mul(sum, 1.0 / static_cast<double>(members_.size()));
}

void EnsembleStepper::reorder(const Tensor& index) {
  for (auto& member : members_) member->reorder(index);
}

bool EnsembleStepper::first_step_one_row_per_sentence() {
  // The members' steps are averaged row by row, so they all take it or none does.
  const bool first = members_[0]->first_step_one_row_per_sentence();
  for (size_t m = 1; m < members_.size(); ++m) {
    KILN_CHECK(members_[m]->first_step_one_row_per_sentence() == first,
               "EnsembleStepper: member ", m, " and member 0 start with different rows");
  }
  return first;
}

Tensor EnsembleStepper::last_attention() const {
  NoGradGuard no_grad;
  Tensor sum;
  int64_t count = 0;
  for (const auto& member : members_) {
    Tensor a = member->last_attention();
    if (!a.defined()) continue;
    a = to(to(a, DType::f32), Device::cpu());
    sum = count == 0 ? a : add(sum, a);
    ++count;
  }
  return count <= 1 ? sum : mul(sum, 1.0 / static_cast<double>(count));
}

double length_normalized(double log_prob, size_t length, double alpha) {
  return alpha == 0 ? log_prob
                    : log_prob / std::pow(static_cast<double>(std::max<size_t>(length, 1)), alpha);
}

std::vector<int64_t> max_lengths_for(const Tensor& source_lengths, double a, double b) {
  std::vector<int64_t> lengths =
      to(to(source_lengths, DType::i64), Device::cpu()).to_vector<int64_t>();
  for (int64_t& l : lengths) l = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(a * l + b)));
  return lengths;
}

namespace {
// The stepper's attention of the last step on the host, [rows * S] row-major; S = size / rows.
std::vector<float> host_attention(const Stepper& stepper) {
  Tensor a = stepper.last_attention();
  KILN_CHECK(a.defined(), "search: keep_attention was asked of a stepper without attention");
  return to(to(a, DType::f32), Device::cpu()).to_vector<float>();
}

// Each row's n best next tokens with their log-probabilities, ranked where the log-probabilities
// are (topk: largest first, ties to the lower id): only [rows, n] values and ids reach the host,
// not the whole [rows, V] block.
// With a shortlist, the columns are mapped to their target ids (ascending, so ties still go to
// the lower id).
class RowTop {
 public:
  RowTop(const StepTop& top, const std::vector<int64_t>& shortlist) {
    n_ = top.values.size(1);
    values_ = to(to(top.values, DType::f64), Device::cpu()).to_vector<double>();
    ids_ = to(top.ids, Device::cpu()).to_vector<int64_t>();
    if (shortlist.empty()) return;
    KILN_CHECK(static_cast<int64_t>(shortlist.size()) == top.columns, "search: ",
               shortlist.size(), " shortlist ids for log-probabilities of ", top.columns,
               " columns");
    for (int64_t& id : ids_) id = shortlist[id];
  }
  int64_t size() const { return n_; }  // n, or V when it is smaller
  double value(int64_t row, int64_t j) const { return values_[row * n_ + j]; }
  int64_t id(int64_t row, int64_t j) const { return ids_[row * n_ + j]; }

 private:
  int64_t n_;
  std::vector<double> values_;
  std::vector<int64_t> ids_;
};

Tensor token_tensor(const std::vector<int64_t>& tokens, Device device) {
  return kiln::to(from_vector(tokens, {static_cast<int64_t>(tokens.size())}), device);
}
}  // namespace

std::vector<Hypothesis> greedy_search(Stepper& stepper, int64_t batch,
                                      const SearchOptions& options) {
  std::vector<Hypothesis> hyps(batch);
  // Row r of the stepper decodes sentence live[r]. A sentence's row is dropped once it has ended,
  // so every step computes only the sentences still running.
  std::vector<int64_t> live;
  for (int64_t b = 0; b < batch; ++b) {
    if (options.max_lengths[b] > 0) live.push_back(b);
  }
  if (live.empty()) return hyps;
  if (static_cast<int64_t>(live.size()) < batch) stepper.reorder(token_tensor(live, Device::cpu()));
  std::vector<int64_t> tokens(live.size(), options.bos_id);
  while (!live.empty()) {
    const int64_t rows = static_cast<int64_t>(live.size());
    const RowTop best(stepper.step_top(token_tensor(tokens, Device::cpu()), 1), options.shortlist);
    std::vector<float> attention;
    if (options.keep_attention) attention = host_attention(stepper);
    std::vector<int64_t> kept, next_live, next_tokens;
    for (int64_t r = 0; r < rows; ++r) {
      Hypothesis& h = hyps[live[r]];
      h.tokens.push_back(best.id(r, 0));
      h.log_prob += best.value(r, 0);
      if (options.keep_attention) {
        int64_t src = static_cast<int64_t>(attention.size()) / rows;
        h.attention.emplace_back(attention.begin() + r * src, attention.begin() + (r + 1) * src);
      }
      h.finished = best.id(r, 0) == options.eos_id;
      if (h.finished || static_cast<int64_t>(h.tokens.size()) >= options.max_lengths[live[r]]) {
        continue;
      }
      kept.push_back(r);
      next_live.push_back(live[r]);
      next_tokens.push_back(best.id(r, 0));
    }
    if (!kept.empty() && static_cast<int64_t>(kept.size()) < rows) {
      stepper.reorder(token_tensor(kept, Device::cpu()));
    }
    live = std::move(next_live);
    tokens = std::move(next_tokens);
  }
  for (Hypothesis& h : hyps) h.score = h.log_prob;
  return hyps;
}

std::vector<std::vector<Hypothesis>> beam_search(Stepper& stepper, int64_t batch,
                                                 const SearchOptions& options,
                                                 const BeamOptions& beam) {
  const int64_t K = beam.beam_size;
  KILN_CHECK(K >= 1, "beam_search: beam size must be >= 1, got ", K);
  KILN_CHECK(beam.n_best >= 1 && beam.n_best <= K, "beam_search: n_best must be in [1, beam size ",
             K, "], got ", beam.n_best);
  const double kDead = -std::numeric_limits<double>::infinity();
  // The stepper's rows are blocks of K beams, block p for sentence live[p] (one row per sentence
  // at a compact first step, below); a sentence's block is dropped once its search is done, so
  // every step computes only the sentences still searching. The alive arrays keep K per sentence.
  std::vector<int64_t> live(batch);
  std::iota(live.begin(), live.end(), 0);
  // Alive beams, per row. At the start only beam 0 of each sentence is alive, so the first step
  // does not expand K identical copies.
  std::vector<double> alive_lp(batch * K, kDead);
  std::vector<std::vector<int64_t>> alive_tokens(batch * K);
  // With keep_attention: each alive beam's attention rows, one per token, moved with its tokens.
  std::vector<std::vector<std::vector<float>>> alive_attention(batch * K);
  for (int64_t b = 0; b < batch; ++b) alive_lp[b * K] = 0;
  std::vector<std::vector<Hypothesis>> finished(batch);
  // The first step on one row per sentence where the stepper can (its K rows would be the same).
  const bool one_row_first = K > 1 && stepper.first_step_one_row_per_sentence();
  std::vector<int64_t> tokens(one_row_first ? batch : batch * K, options.bos_id);
  for (int64_t t = 0;; ++t) {
    // The stepper's row of sentence p's beam k (live order): one row per sentence at a compact
    // first step, where only beam 0 is alive.
    const bool compact = one_row_first && t == 0;
    const auto row = [&](int64_t p, int64_t k) { return compact ? p : p * K + k; };
    const int64_t rows = static_cast<int64_t>(live.size()) * (compact ? 1 : K);
    const StepTop step = stepper.step_top(token_tensor(tokens, Device::cpu()), 2 * K);
    // Candidates are keyed k * vocab + token id: with a shortlist, ids reach past its columns.
    const int64_t vocab = options.shortlist.empty() ? step.columns : options.shortlist.back() + 1;
    const RowTop top(step, options.shortlist);
    std::vector<float> attention;
    if (options.keep_attention) attention = host_attention(stepper);
    const int64_t source_len = static_cast<int64_t>(attention.size()) / rows;
    // The next step's rows: the blocks of the sentences not done, in order.
    std::vector<int64_t> next_live, parents, next_tokens;
    std::vector<double> next_lp;
    std::vector<std::vector<int64_t>> next_seq;
    std::vector<std::vector<std::vector<float>>> next_attention;
    for (int64_t p = 0; p < static_cast<int64_t>(live.size()); ++p) {
      const int64_t b = live[p], first = p * K;
      // The best 2K extensions over all K beams x V tokens (K of them may end in <eos>). They are
      // among the union of each beam's own best 2K tokens, so only those are ranked.
      std::vector<std::pair<double, int64_t>> candidates;  // (log prob, k * V + v)
      for (int64_t k = 0; k < K; ++k) {
        double base = alive_lp[first + k];
        if (base == kDead) continue;
        for (int64_t j = 0; j < top.size(); ++j)
          candidates.push_back({base + top.value(row(p, k), j), k * vocab + top.id(row(p, k), j)});
      }
      size_t keep = std::min<size_t>(2 * K, candidates.size());
      std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(),
                        [](const auto& x, const auto& y) {
                          return x.first > y.first || (x.first == y.first && x.second < y.second);
                        });
      // This sentence's K rows of the next step; rows not filled stay dead and follow beam 0.
      std::vector<int64_t> block_parents(K, row(p, 0)), block_tokens(K, options.eos_id);
      std::vector<double> block_lp(K, kDead);
      std::vector<std::vector<int64_t>> block_seq(K);
      std::vector<std::vector<std::vector<float>>> block_attention(K);
      int64_t filled = 0;
      bool at_limit = t + 1 >= options.max_lengths[b];
      for (size_t c = 0; c < keep && filled < K; ++c) {
        int64_t k = candidates[c].second / vocab, v = candidates[c].second % vocab;
        std::vector<int64_t> seq = alive_tokens[first + k];
        seq.push_back(v);
        std::vector<std::vector<float>> rows_of_attention;
        if (options.keep_attention) {
          rows_of_attention = alive_attention[first + k];
          auto from = attention.begin() + row(p, k) * source_len;
          rows_of_attention.emplace_back(from, from + source_len);
        }
        if (v == options.eos_id || at_limit) {
          Hypothesis h{seq, candidates[c].first,
                       length_normalized(candidates[c].first, seq.size(), beam.length_penalty),
                       v == options.eos_id, rows_of_attention};
          finished[b].push_back(h);
          if (v == options.eos_id) continue;
        }
        if (at_limit) continue;
        block_parents[filled] = row(p, k);
        block_tokens[filled] = v;
        block_lp[filled] = candidates[c].first;
        block_seq[filled] = std::move(seq);
        block_attention[filled] = std::move(rows_of_attention);
        ++filled;
      }
      // Done when K hypotheses ended, or no alive beam can still beat the worst kept one: log
      // probabilities only fall, so an alive beam's best future normalized score is bounded by its
      // current log_prob over the longest length it may reach (alpha >= 0).
      std::sort(finished[b].begin(), finished[b].end(),
                [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
      double best_alive = kDead;
      for (int64_t k = 0; k < filled; ++k) {
        best_alive = std::max(best_alive, length_normalized(block_lp[k], options.max_lengths[b],
                                                            beam.length_penalty));
      }
      bool done =
          at_limit || filled == 0 ||
          (static_cast<int64_t>(finished[b].size()) >= K && finished[b][K - 1].score >= best_alive);
      if (done) continue;
      next_live.push_back(b);
      parents.insert(parents.end(), block_parents.begin(), block_parents.end());
      next_tokens.insert(next_tokens.end(), block_tokens.begin(), block_tokens.end());
      next_lp.insert(next_lp.end(), block_lp.begin(), block_lp.end());
      for (int64_t k = 0; k < K; ++k) {
        next_seq.push_back(std::move(block_seq[k]));
        next_attention.push_back(std::move(block_attention[k]));
      }
    }
    if (next_live.empty()) break;
    stepper.reorder(token_tensor(parents, Device::cpu()));
    live = std::move(next_live);
    alive_lp = std::move(next_lp);
    alive_tokens = std::move(next_seq);
    alive_attention = std::move(next_attention);
    tokens = std::move(next_tokens);
  }
  for (auto& list : finished) {
    std::sort(list.begin(), list.end(),
              [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    if (static_cast<int64_t>(list.size()) > beam.n_best) list.resize(beam.n_best);
  }
  return finished;
}

}  // namespace kiln::seq2seq
