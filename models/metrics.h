// Translation metrics: d2l's sentence BLEU, sacreBLEU-style corpus and sentence BLEU with the 13a
// tokenizer, sacreBLEU's chrF, exact match and perplexity. Standard library only.
//
// sacreBLEU compatibility: score detokenized hypotheses against the raw reference text (the
// corpus as read, not d2l-preprocessed) with BleuSmoothing::exp, and the numbers are those of
// `sacrebleu REF < HYP` (signature kBleuSignature) and `sacrebleu -m chrf` (kChrfSignature);
// tests/test_metrics.cpp checks them against sacreBLEU's own test vectors.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::metrics {

// d2l.ai 1.0's bleu(pred_seq, label_seq, k) on token lists:
//   exp(min(0, 1 - len_label / len_pred)) * prod_{n=1}^{min(k, len_pred)} p_n^(1 / 2^n)
// where p_n = (n-grams of pred also in label, each label n-gram matched at most as often as it
// occurs) / (len_pred - n + 1). Orders n > len_pred are skipped, as d2l's
// range(1, min(k, len_pred) + 1) does, so they do not zero the score. In [0, 1]; 0 for an empty
// prediction (where d2l's Python would divide by zero). k >= 1.
double bleu_d2l(const std::vector<std::string>& pred, const std::vector<std::string>& label, int k);

// sacreBLEU's default "13a" tokenizer (mteval-v13a): drop "<skipped>", join "-\n" line breaks,
// '\n' -> ' ', unescape &quot; &amp; &lt; &gt;, then on " line ":
//   1) ([\{-\~\[-\` -\&\(-\+\:-\@\/])  ->  " \1 "     (punctuation except ' , - .)
//   2) ([^0-9])([\.,])                ->  "\1 \2 "   (period / comma not after a digit)
//   3) ([\.,])([^0-9])                ->  " \1 \2"   (period / comma not before a digit)
//   4) ([0-9])(-)                     ->  "\1 \2 "   (dash after a digit)
// and finally whitespace runs (Python's str.split()) collapse to single spaces, none at the ends.
std::string tokenize_13a(std::string_view line);

enum class BleuSmoothing {
  none,  // a zero n-gram precision makes BLEU 0 (what the tests and d2l-style reports assume)
  exp,   // sacreBLEU's 'exp' (its default): the k-th zero precision becomes 1 / (2^k * total_n)
};

// Corpus BLEU in [0, 100]: clipped n-gram matches (n = 1..4) and n-gram totals summed over all
// sentences after tokenize_13a, then
//   BLEU = 100 * BP * exp(sum_n log(matches_n / totals_n) / 4)
//   BP = exp(1 - r / c) if c < r, else 1
// with c, r the total hypothesis and reference lengths (one reference per hypothesis). As
// sacreBLEU: no matches at all (or c == 0) gives 0, as does a zero precision without smoothing.
// Note: sacreBLEU's own default is smoothing 'exp' (signature "smooth:exp"); pass
// BleuSmoothing::exp to reproduce its numbers on corpora where some precision is zero.
struct BleuScore {
  double score = 0;  // 0..100
  std::array<int64_t, 4> matches{}, totals{};
  std::array<double, 4> precisions{};  // 0..100 as sacreBLEU prints them (after smoothing)
  double brevity_penalty = 0;
  int64_t hypothesis_length = 0, reference_length = 0;
};
BleuScore corpus_bleu_score(const std::vector<std::string>& hypotheses,
                            const std::vector<std::string>& references,
                            BleuSmoothing smoothing = BleuSmoothing::none);
// Several references per hypothesis, as sacreBLEU's reference streams (reference_streams[k][i] is
// the k-th reference of hypothesis i): each n-gram is clipped to its highest count in any of
// them, and r sums the reference length closest to each hypothesis length (the shorter on ties).
BleuScore corpus_bleu_score(const std::vector<std::string>& hypotheses,
                            const std::vector<std::vector<std::string>>& reference_streams,
                            BleuSmoothing smoothing);
// The score from the summed statistics (sacreBLEU's compute_bleu). With effective_order, orders
// above the longest one with any n-gram are left out of the mean (sacreBLEU's sentence BLEU)
// instead of making it 0.
double bleu_from_counts(const std::array<int64_t, 4>& matches, const std::array<int64_t, 4>& totals,
                        int64_t hypothesis_length, int64_t reference_length,
                        BleuSmoothing smoothing, bool effective_order = false,
                        std::array<double, 4>* precisions = nullptr);
// sacreBLEU's sentence_bleu(hypothesis, [reference]): 13a, smoothing exp, effective order.
double sentence_bleu(const std::string& hypothesis, const std::string& reference);

// sacreBLEU's signatures for the defaults above (its version field left out: this is a
// reimplementation).
inline constexpr const char* kBleuSignature = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp";
inline constexpr const char* kChrfSignature = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no";

// chrF (Popović 2015) as sacreBLEU 2 computes it. Whitespace (Python's str.split()) is removed,
// then for each n = 1..char_order the character (code point) n-grams of hypothesis and reference
// give counts hyp_n, ref_n and clipped matches match_n, summed over the corpus; then
//   P = mean over n with hyp_n > 0 and ref_n > 0 of match_n / hyp_n, R likewise with ref_n,
//   chrF = 100 * (1 + beta^2) P R / (beta^2 P + R)   (0 when P + R == 0 or no such n).
// With eps_smoothing (chrF++.py's, off by default): the mean over all n of the per-order F-beta,
// precision or recall 1e-16 when its count is 0. Defaults: sacreBLEU's chrF2.
struct ChrfOptions {
  int char_order = 6;
  double beta = 2;
  bool eps_smoothing = false;
  bool remove_whitespace = true;
};
double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references, const ChrfOptions& options = {});
double sentence_chrf(const std::string& hypothesis, const std::string& reference,
                     const ChrfOptions& options = {});
double corpus_bleu(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references,
                   BleuSmoothing smoothing = BleuSmoothing::none);

// Fraction of hypotheses byte-for-byte equal to their reference, in [0, 1]; 0 for empty lists.
double exact_match(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references);

// exp(total_nll / tokens): total_nll is the summed negative log-likelihood (natural log) of
// `tokens` predicted tokens. tokens >= 1.
double perplexity(double total_nll, int64_t tokens);

}  // namespace kiln::metrics
