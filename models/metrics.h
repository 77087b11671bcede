// Translation metrics: d2l's sentence BLEU, sacreBLEU-style corpus BLEU with the 13a tokenizer,
// exact match and perplexity. Standard library only.
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
