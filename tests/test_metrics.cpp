// Translation metrics (models/metrics.h): d2l's sentence BLEU, the 13a tokenizer, sacreBLEU-style
// corpus BLEU, exact match and perplexity. Expected values are worked out by hand in comments.
#include <cmath>

#include "models/metrics.h"
#include "test_util.h"

namespace kiln::metrics {
namespace {

using kiln::testing::error_of;

using Tokens = std::vector<std::string>;

// d2l.ai section 10.7's four examples, scored with k = 2 as the book does.
TEST(BleuD2l, BookExamples) {
  EXPECT_DOUBLE_EQ(bleu_d2l({"va", "!"}, {"va", "!"}, 2), 1.0);                        // go .
  EXPECT_DOUBLE_EQ(bleu_d2l({"j'ai", "perdu", "."}, {"j'ai", "perdu", "."}, 2), 1.0);  // i lost .
  EXPECT_DOUBLE_EQ(
      bleu_d2l({"je", "suis", "chez", "moi", "."}, {"je", "suis", "chez", "moi", "."}, 2),
      1.0);  // i'm home .
  // he's calm . -> "il est mouillé ." against "il est calme .": same length so no penalty;
  // p1 = 3/4 (il est .), p2 = 1/3 ("il est" of three bigrams); 0.75^(1/2) * (1/3)^(1/4) = 0.658,
  // the book's "bleu,0.658".
  const double calm = bleu_d2l({"il", "est", "mouillé", "."}, {"il", "est", "calme", "."}, 2);
  EXPECT_NEAR(calm, std::sqrt(0.75) * std::pow(1.0 / 3.0, 0.25), 1e-15);
  EXPECT_NEAR(calm, 0.658037, 1e-6);
}

TEST(BleuD2l, PenaltyClippingAndZeros) {
  // Short prediction: exp(1 - 2/1) = e^-1; d2l only takes n = 1..min(k, len_pred) = 1, p1 = 1.
  EXPECT_NEAR(bleu_d2l({"va"}, {"va", "!"}, 2), std::exp(-1.0), 1e-15);
  // Clipping: "the" matches once of three; a longer prediction has no penalty. (1/3)^(1/2).
  EXPECT_NEAR(bleu_d2l({"the", "the", "the"}, {"the", "cat"}, 1), std::sqrt(1.0 / 3.0), 1e-15);
  // No bigram in common: p2 = 0, so 0 whatever p1 is.
  EXPECT_EQ(bleu_d2l({"nous", "<unk>", "."}, {"il", "est", "calme", "."}, 2), 0.0);
  // k = 4 with one 4-gram that differs: p4 = 0/1.
  EXPECT_EQ(bleu_d2l({"a", "b", "c", "d"}, {"a", "b", "c", "e"}, 4), 0.0);
  // p1 = 3/4, p2 = 2/3, p3 = 1/2 with weights 1/2, 1/4, 1/8.
  EXPECT_NEAR(bleu_d2l({"a", "b", "c", "d"}, {"a", "b", "c", "e"}, 3),
              std::pow(0.75, 0.5) * std::pow(2.0 / 3.0, 0.25) * std::pow(0.5, 0.125), 1e-15);
  EXPECT_EQ(bleu_d2l({}, {"va", "!"}, 2), 0.0);
  EXPECT_EQ(error_of([] { bleu_d2l({"a"}, {"a"}, 0); }), "bleu_d2l: k must be >= 1, got 0");
}

// Expected strings follow the four mteval-v13a regexes applied by hand (and by Python's re).
TEST(Tokenize13a, Rules) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Hello, world!", "Hello , world !"},
      {"3.14 is pi.", "3.14 is pi ."},  // a period between digits stays
      {"1,000 people", "1,000 people"},
      {"state-of-the-art", "state-of-the-art"},  // a dash only splits after a digit
      {"1990-2000", "1990 - 2000"},
      {"It's $5.", "It's $ 5 ."},  // the apostrophe is not in rule 1's class
      {"a&amp;b", "a & b"},
      {"&quot;hi&quot; <skipped>x", "\" hi \" x"},
      {"(test)", "( test )"},
      {"e.g. this", "e . g . this"},
      {"Mr.Smith", "Mr . Smith"},
      {"3.5.", "3.5 ."},
      {"a...b", "a . . . b"},
      {".5 ,5", ". 5 , 5"},
      {"end,", "end ,"},
      {"1.5-2", "1.5 - 2"},
      {"x-\ny", "xy"},
      {"caf\u00e9.", "caf\u00e9 ."},
      {"na\u00efve,test", "na\u00efve , test"},
      {"tab\there\u00a0nbsp", "tab here nbsp"},  // Python's str.split() also splits on U+00A0
      {"[a]{b}|c~d^e_f`g@h\\i/j", "[ a ] { b } | c ~ d ^ e _ f ` g @ h \\ i / j"},
      {"50% off: 20*3=60?", "50 % off : 20 * 3 = 60 ?"},
      {"", ""},
  };
  for (const auto& [input, expected] : cases) EXPECT_EQ(tokenize_13a(input), expected) << input;
}

TEST(CorpusBleu, PerfectMatchIs100) {
  EXPECT_DOUBLE_EQ(corpus_bleu({"The cat sat on the mat.", "Hello, world!"},
                               {"The cat sat on the mat.", "Hello, world!"}),
                   100.0);
}

TEST(CorpusBleu, PartialMatch) {
  // "jumped" for "jumps" in a 9-token sentence: 1-grams 8/9, 2-grams 6/8, 3-grams 4/7,
  // 4-grams 2/6 ("the quick brown fox", "over the lazy dog"); equal lengths, BP = 1.
  // BLEU = 100 * (8/9 * 6/8 * 4/7 * 2/6)^(1/4) = 100 * (96/756)^(1/4) = 59.6949...
  const BleuScore score = corpus_bleu_score({"the quick brown fox jumped over the lazy dog"},
                                            {"the quick brown fox jumps over the lazy dog"});
  EXPECT_EQ(score.matches, (std::array<int64_t, 4>{8, 6, 4, 2}));
  EXPECT_EQ(score.totals, (std::array<int64_t, 4>{9, 8, 7, 6}));
  EXPECT_DOUBLE_EQ(score.brevity_penalty, 1.0);
  EXPECT_NEAR(score.score, 100.0 * std::pow(96.0 / 756.0, 0.25), 1e-12);
  EXPECT_NEAR(score.score, 59.694918, 1e-6);
}

TEST(CorpusBleu, CountsAreSummedOverTheCorpus) {
  // 13a: "Il a 3.5 ans ." (3.5 stays) vs "Il a 3.5 ans !"; "C'est l'été !" vs "C'est l'hiver !".
  // 1-grams 4/5 + 2/3 = 6/8; 2-grams 3/4 + 0/2 = 3/6; 3-grams 2/3 + 0/1 = 2/4;
  // 4-grams 1/2 + 0 = 1/2; lengths 8 and 8. BLEU = 100 * (6/8 * 3/6 * 2/4 * 1/2)^(1/4) = 55.334.
  const BleuScore score = corpus_bleu_score({"Il a 3.5 ans.", "C'est l'\u00e9t\u00e9 !"},
                                            {"Il a 3.5 ans !", "C'est l'hiver !"});
  EXPECT_EQ(score.matches, (std::array<int64_t, 4>{6, 3, 2, 1}));
  EXPECT_EQ(score.totals, (std::array<int64_t, 4>{8, 6, 4, 2}));
  EXPECT_EQ(score.hypothesis_length, 8);
  EXPECT_EQ(score.reference_length, 8);
  EXPECT_NEAR(score.score, 100.0 * std::pow(0.09375, 0.25), 1e-12);
  EXPECT_NEAR(score.score, 55.334096, 1e-6);
}

TEST(CorpusBleu, BrevityPenalty) {
  // All n-grams of a 4-token hypothesis match a 6-token reference: BLEU = 100 * exp(1 - 6/4).
  const BleuScore score =
      corpus_bleu_score({"the quick brown fox"}, {"the quick brown fox jumps over"});
  EXPECT_NEAR(score.brevity_penalty, std::exp(-0.5), 1e-15);
  EXPECT_NEAR(score.score, 100.0 * std::exp(-0.5), 1e-12);  // 60.653
  // Longer than the reference: no penalty (and precision drops instead).
  EXPECT_DOUBLE_EQ(corpus_bleu_score({"a b c d e"}, {"a b c d"}).brevity_penalty, 1.0);
}

TEST(CorpusBleu, ZeroWithoutFourGramMatches) {
  // 1..3-grams match (5/6, 3/5, 1/4) but none of the three 4-grams does: BLEU 0 unsmoothed.
  const std::vector<std::string> hyp = {"the cat sat on the mat"}, ref = {"the cat is on the mat"};
  const BleuScore score = corpus_bleu_score(hyp, ref);
  EXPECT_EQ(score.matches, (std::array<int64_t, 4>{5, 3, 1, 0}));
  EXPECT_EQ(score.score, 0.0);
  // sacreBLEU's 'exp' smoothing: the first zero precision becomes 100 / (2 * 3).
  // BLEU = (500/6 * 60 * 25 * 100/6)^(1/4) = 37.9918.
  const double smoothed = corpus_bleu(hyp, ref, BleuSmoothing::exp);
  EXPECT_NEAR(smoothed, std::pow(500.0 / 6.0 * 60.0 * 25.0 * 100.0 / 6.0, 0.25), 1e-12);
  EXPECT_NEAR(smoothed, 37.991784, 1e-6);
  // Shorter than 4 tokens everywhere: no 4-grams at all, 0 even with smoothing (as sacreBLEU).
  EXPECT_EQ(corpus_bleu({"the cat"}, {"the cat"}, BleuSmoothing::exp), 0.0);
  EXPECT_EQ(corpus_bleu({"x y z w"}, {"a b c d"}, BleuSmoothing::exp), 0.0);  // no match at all
  EXPECT_EQ(corpus_bleu({""}, {"a b c d"}), 0.0);
  EXPECT_EQ(corpus_bleu({}, {}), 0.0);
}

TEST(CorpusBleu, Errors) {
  EXPECT_EQ(error_of([] {
              corpus_bleu({"a"}, {"a", "b"});
            }),
            "corpus_bleu: 1 hypotheses but 2 references (one reference per hypothesis)");
}

TEST(Metrics, ExactMatchAndPerplexity) {
  EXPECT_DOUBLE_EQ(exact_match({"va !", "salut .", "x"}, {"va !", "salut !", "x"}), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(exact_match({}, {}), 0.0);
  EXPECT_CONTAINS(error_of([] { exact_match({"a"}, {}); }),
                  "exact_match: 1 hypotheses but 0 references");
  EXPECT_DOUBLE_EQ(perplexity(0.0, 10), 1.0);
  EXPECT_NEAR(perplexity(10 * std::log(50.0), 10), 50.0, 1e-12);  // uniform over 50 tokens
  EXPECT_EQ(error_of([] { perplexity(1.0, 0); }), "perplexity: tokens must be >= 1, got 0");
}

}  // namespace
}  // namespace kiln::metrics
