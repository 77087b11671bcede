// d2l sentence BLEU, 13a tokenization, sacreBLEU corpus and sentence BLEU, chrF, exact match,
// perplexity.
#include "models/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "core/error.h"

namespace kiln::metrics {

namespace {

using NgramCounts = std::unordered_map<std::string, int64_t>;

// n-grams of `tokens` keyed by their tokens joined with ' ' (as d2l and sacreBLEU key them).
NgramCounts count_ngrams(const std::vector<std::string>& tokens, size_t n) {
  NgramCounts counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (size_t j = 1; j < n; ++j) key += " " + tokens[i + j];
    ++counts[key];
  }
  return counts;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Rule 1's class: { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
bool is_13a_punct(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// Python's str.replace(from, to): every non-overlapping occurrence, left to right.
void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// Whitespace per Python's str.split() on a str: ASCII \t \n \v \f \r, \x1c..\x1f and space, and in
// UTF-8 U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
// Returns the byte length of the whitespace character at text[i], or 0.
size_t whitespace_length(std::string_view text, size_t i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  const auto byte = [&](size_t k) {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
  };
  if (c == 0xC2 && (byte(1) == 0x85 || byte(1) == 0xA0)) return 2;
  if (c == 0xE1 && byte(1) == 0x9A && byte(2) == 0x80) return 3;
  if (c == 0xE2 && byte(1) == 0x80 &&
      ((byte(2) >= 0x80 && byte(2) <= 0x8A) || byte(2) == 0xA8 || byte(2) == 0xA9 ||
       byte(2) == 0xAF)) {
    return 3;
  }
  if (c == 0xE2 && byte(1) == 0x81 && byte(2) == 0x9F) return 3;
  if (c == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80) return 3;
  return 0;
}

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  for (size_t i = 0; i < text.size();) {
    if (size_t space = whitespace_length(text, i); space > 0) {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
      i += space;
    } else {
      current += text[i++];
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

// Python's str.rstrip(): the text without its trailing whitespace (as split_whitespace sees it).
std::string_view rstrip(std::string_view text) {
  size_t end = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t space = whitespace_length(text, i);
    i += space > 0 ? space : 1;
    if (space == 0) end = i;
  }
  return text.substr(0, end);
}

}  // namespace

double bleu_d2l(const std::vector<std::string>& pred, const std::vector<std::string>& label,
                int k) {
  KILN_CHECK(k >= 1, "bleu_d2l: k must be >= 1, got ", k);
  const size_t len_pred = pred.size(), len_label = label.size();
  if (len_pred == 0) return 0.0;
  double score = std::exp(std::min(0.0, 1.0 - static_cast<double>(len_label) / len_pred));
  const size_t max_n = std::min(static_cast<size_t>(k), len_pred);
  for (size_t n = 1; n <= max_n; ++n) {
    NgramCounts label_subs = count_ngrams(label, n);
    int64_t num_matches = 0;
    for (size_t i = 0; i + n <= len_pred; ++i) {
      std::string key = pred[i];
      for (size_t j = 1; j < n; ++j) key += " " + pred[i + j];
      auto it = label_subs.find(key);
      if (it != label_subs.end() && it->second > 0) {
        ++num_matches;
        --it->second;
      }
    }
    score *= std::pow(static_cast<double>(num_matches) / static_cast<double>(len_pred - n + 1),
                      std::pow(0.5, static_cast<double>(n)));
  }
  return score;
}

std::string tokenize_13a(std::string_view input) {
  std::string line(input);
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  replace_all(line, "&quot;", "\"");
  replace_all(line, "&amp;", "&");
  replace_all(line, "&lt;", "<");
  replace_all(line, "&gt;", ">");
  line = " " + line + " ";

  std::string a;  // rule 1
  for (char c : line) {
    if (is_13a_punct(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  // Rules 2-4 match two characters and, like Python's re.sub, resume after the match. Scanning
  // bytes is exact: every class tested is ASCII, and [^0-9] on the last byte of a multi-byte
  // character answers as it would on the whole character.
  std::string b;  // rule 2: ([^0-9])([\.,]) -> "\1 \2 "
  for (size_t i = 0; i < a.size(); ++i) {
    if (i + 1 < a.size() && !is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i];
      b += ' ';
      b += a[++i];
      b += ' ';
    } else {
      b += a[i];
    }
  }
  std::string c;  // rule 3: ([\.,])([^0-9]) -> " \1 \2"
  for (size_t i = 0; i < b.size(); ++i) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !is_digit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[++i];
    } else {
      c += b[i];
    }
  }
  std::string d;  // rule 4: ([0-9])(-) -> "\1 \2 "
  for (size_t i = 0; i < c.size(); ++i) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += " - ";
      ++i;
    } else {
      d += c[i];
    }
  }
  std::string out;
  for (const std::string& token : split_whitespace(d)) out += (out.empty() ? "" : " ") + token;
  return out;
}

BleuScore corpus_bleu_score(const std::vector<std::string>& hypotheses,
                            const std::vector<std::string>& references, BleuSmoothing smoothing) {
  KILN_CHECK(hypotheses.size() == references.size(), "corpus_bleu: ", hypotheses.size(),
             " hypotheses but ", references.size(), " references (one reference per hypothesis)");
  return corpus_bleu_score(hypotheses, std::vector<std::vector<std::string>>{references},
                           smoothing);
}

BleuScore corpus_bleu_score(const std::vector<std::string>& hypotheses,
                            const std::vector<std::vector<std::string>>& reference_streams,
                            BleuSmoothing smoothing) {
  KILN_CHECK(!reference_streams.empty(), "corpus_bleu: no reference stream");
  for (const std::vector<std::string>& stream : reference_streams) {
    KILN_CHECK(hypotheses.size() == stream.size(), "corpus_bleu: ", hypotheses.size(),
               " hypotheses but a reference stream of ", stream.size());
  }
  BleuScore result;
  for (size_t s = 0; s < hypotheses.size(); ++s) {
    // sacreBLEU tokenizes sentence.rstrip().
    const std::vector<std::string> hyp = split_whitespace(tokenize_13a(rstrip(hypotheses[s])));
    const int64_t hyp_length = static_cast<int64_t>(hyp.size());
    int64_t ref_length = -1;                // the closest to hyp_length, the shorter on ties
    std::array<NgramCounts, 4> ref_counts;  // per n-gram, its highest count in any reference
    for (const std::vector<std::string>& stream : reference_streams) {
      const std::vector<std::string> ref = split_whitespace(tokenize_13a(rstrip(stream[s])));
      const int64_t length = static_cast<int64_t>(ref.size());
      const int64_t diff = std::abs(length - hyp_length), best = std::abs(ref_length - hyp_length);
      if (ref_length < 0 || diff < best || (diff == best && length < ref_length)) {
        ref_length = length;
      }
      for (size_t n = 1; n <= 4; ++n) {
        for (const auto& [ngram, count] : count_ngrams(ref, n)) {
          int64_t& max = ref_counts[n - 1][ngram];
          max = std::max(max, count);
        }
      }
    }
    result.hypothesis_length += hyp_length;
    result.reference_length += ref_length;
    for (size_t n = 1; n <= 4; ++n) {
      for (const auto& [ngram, count] : count_ngrams(hyp, n)) {
        auto it = ref_counts[n - 1].find(ngram);
        result.matches[n - 1] += it == ref_counts[n - 1].end() ? 0 : std::min(count, it->second);
        result.totals[n - 1] += count;
      }
    }
  }
  const double c = static_cast<double>(result.hypothesis_length);
  const double r = static_cast<double>(result.reference_length);
  result.brevity_penalty = c >= r ? 1.0 : (c > 0 ? std::exp(1.0 - r / c) : 0.0);
  result.score = bleu_from_counts(result.matches, result.totals, result.hypothesis_length,
                                  result.reference_length, smoothing, false, &result.precisions);
  return result;
}

double bleu_from_counts(const std::array<int64_t, 4>& matches, const std::array<int64_t, 4>& totals,
                        int64_t hypothesis_length, int64_t reference_length,
                        BleuSmoothing smoothing, bool effective_order,
                        std::array<double, 4>* precisions_out) {
  std::array<double, 4> precisions{};
  const double c = static_cast<double>(hypothesis_length);
  const double r = static_cast<double>(reference_length);
  const double brevity_penalty = c >= r ? 1.0 : (c > 0 ? std::exp(1.0 - r / c) : 0.0);
  bool any_match = false;
  for (int64_t m : matches) any_match = any_match || m > 0;
  if (!any_match) return 0.0;  // sacreBLEU's early stop
  double smooth = 1.0, log_sum = 0.0;
  size_t order = 4;  // the orders averaged
  for (size_t n = 0; n < 4; ++n) {
    if (totals[n] == 0) break;  // shorter than n everywhere: this and higher precisions stay 0
    if (effective_order) order = n + 1;
    const double total = static_cast<double>(totals[n]);
    if (matches[n] > 0) {
      precisions[n] = 100.0 * static_cast<double>(matches[n]) / total;
    } else if (smoothing == BleuSmoothing::exp) {
      smooth *= 2.0;
      precisions[n] = 100.0 / (smooth * total);
    }
  }
  if (precisions_out) *precisions_out = precisions;
  for (size_t n = 0; n < order; ++n) {
    if (precisions[n] <= 0.0) return 0.0;  // sacreBLEU's my_log(0) = -1e10: a score of 0
    log_sum += std::log(precisions[n]);
  }
  return brevity_penalty * std::exp(log_sum / static_cast<double>(order));
}

double sentence_bleu(const std::string& hypothesis, const std::string& reference) {
  const BleuScore s = corpus_bleu_score({hypothesis}, {reference}, BleuSmoothing::exp);
  return bleu_from_counts(s.matches, s.totals, s.hypothesis_length, s.reference_length,
                          BleuSmoothing::exp, /*effective_order=*/true);
}

double corpus_bleu(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references, BleuSmoothing smoothing) {
  return corpus_bleu_score(hypotheses, references, smoothing).score;
}

namespace {

// Per order n = 1..char_order: {hypothesis n-grams, reference n-grams, clipped matches}.
using ChrfStats = std::vector<std::array<int64_t, 3>>;

// The text's characters as byte offsets (a UTF-8 character is its lead byte and the 10xxxxxx
// bytes after it, so n characters from offset k are one byte range), whitespace removed first
// when asked. `kept` holds the text they index into.
std::vector<size_t> characters(std::string_view text, bool remove_whitespace, std::string& kept) {
  kept.clear();
  for (size_t i = 0; i < text.size();) {
    const size_t space = remove_whitespace ? whitespace_length(text, i) : 0;
    if (space > 0) {
      i += space;
    } else {
      kept += text[i++];
    }
  }
  std::vector<size_t> starts;
  for (size_t i = 0; i < kept.size(); ++i) {
    if ((static_cast<unsigned char>(kept[i]) & 0xC0) != 0x80) starts.push_back(i);
  }
  starts.push_back(kept.size());  // the end, so character k spans [starts[k], starts[k + 1])
  return starts;
}

std::unordered_map<std::string_view, int64_t> char_ngrams(const std::string& text,
                                                          const std::vector<size_t>& starts,
                                                          size_t n) {
  std::unordered_map<std::string_view, int64_t> counts;
  for (size_t k = 0; k + n < starts.size(); ++k) {
    ++counts[std::string_view(text).substr(starts[k], starts[k + n] - starts[k])];
  }
  return counts;
}

void add_chrf_stats(const std::string& hypothesis, const std::string& reference,
                    const ChrfOptions& o, ChrfStats& stats) {
  std::string hyp_text, ref_text;
  const std::vector<size_t> hyp = characters(hypothesis, o.remove_whitespace, hyp_text);
  const std::vector<size_t> ref = characters(reference, o.remove_whitespace, ref_text);
  for (size_t n = 1; n <= static_cast<size_t>(o.char_order); ++n) {
    const auto hyp_counts = char_ngrams(hyp_text, hyp, n);
    const auto ref_counts = char_ngrams(ref_text, ref, n);
    std::array<int64_t, 3>& s = stats[n - 1];
    for (const auto& [ngram, count] : hyp_counts) {
      s[0] += count;
      auto it = ref_counts.find(ngram);
      if (it != ref_counts.end()) s[2] += std::min(count, it->second);
    }
    for (const auto& entry : ref_counts) s[1] += entry.second;
  }
}

// sacreBLEU's CHRF._compute_f_score.
double chrf_from_stats(const ChrfStats& stats, const ChrfOptions& o) {
  const double eps = 1e-16, factor = o.beta * o.beta;
  double eps_score = 0, avg_precision = 0, avg_recall = 0;
  int effective_order = 0;
  for (const auto& [n_hyp, n_ref, n_match] : stats) {
    const double precision = n_hyp > 0 ? static_cast<double>(n_match) / n_hyp : eps;
    const double recall = n_ref > 0 ? static_cast<double>(n_match) / n_ref : eps;
    const double denominator = factor * precision + recall;
    eps_score += denominator > 0 ? (1 + factor) * precision * recall / denominator : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_precision += precision;
      avg_recall += recall;
      ++effective_order;
    }
  }
  if (o.eps_smoothing) return 100 * eps_score / o.char_order;
  if (effective_order == 0) return 0.0;
  avg_precision /= effective_order;
  avg_recall /= effective_order;
  if (avg_precision + avg_recall == 0) return 0.0;
  return 100 * (1 + factor) * avg_precision * avg_recall / (factor * avg_precision + avg_recall);
}

}  // namespace

double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references, const ChrfOptions& options) {
  KILN_CHECK(hypotheses.size() == references.size(), "corpus_chrf: ", hypotheses.size(),
             " hypotheses but ", references.size(), " references (one reference per hypothesis)");
  KILN_CHECK(options.char_order >= 1 && options.beta > 0,
             "corpus_chrf: char_order must be >= 1 and beta > 0, got ", options.char_order, " and ",
             options.beta);
  ChrfStats stats(static_cast<size_t>(options.char_order), {0, 0, 0});
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    add_chrf_stats(hypotheses[i], references[i], options, stats);
  }
  return chrf_from_stats(stats, options);
}

double sentence_chrf(const std::string& hypothesis, const std::string& reference,
                     const ChrfOptions& options) {
  return corpus_chrf({hypothesis}, {reference}, options);
}

double exact_match(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references) {
  KILN_CHECK(hypotheses.size() == references.size(), "exact_match: ", hypotheses.size(),
             " hypotheses but ", references.size(), " references");
  if (hypotheses.empty()) return 0.0;
  int64_t same = 0;
  for (size_t i = 0; i < hypotheses.size(); ++i) same += hypotheses[i] == references[i] ? 1 : 0;
  return static_cast<double>(same) / static_cast<double>(hypotheses.size());
}

double perplexity(double total_nll, int64_t tokens) {
  KILN_CHECK(tokens >= 1, "perplexity: tokens must be >= 1, got ", tokens);
  return std::exp(total_nll / static_cast<double>(tokens));
}

}  // namespace kiln::metrics
