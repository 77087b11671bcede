// Translation metrics (models/metrics.h): d2l's sentence BLEU, the 13a tokenizer, sacreBLEU-style
// corpus and sentence BLEU, chrF, exact match and perplexity. Expected values are worked out by
// hand in comments, or copied from sacreBLEU's own tests (github.com/mjpost/sacrebleu, test/*.py;
// each block names its file) since no sacreBLEU is at hand to run.
#include <cmath>
#include <tuple>

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

// Python's str.split() also splits on U+202F (French "Va !") and the other Unicode spaces, and
// sacreBLEU's 13a ends with it; a no-break space is therefore a separator like ' '.
TEST(Tokenize13a, UnicodeWhitespaceAsPythonSplits) {
  EXPECT_EQ(tokenize_13a("Va\u202f!"), "Va !");
  EXPECT_EQ(tokenize_13a("Qui\u00a0?"), "Qui ?");
  EXPECT_EQ(tokenize_13a("a\u2009b\u3000c\u2028d\u0085e\x1f"
                         "f\u205fg\u1680h"),
            "a b c d e f g h");
  EXPECT_EQ(tokenize_13a(" \u202f lead and trail \u00a0\t"), "lead and trail");
  // Not whitespace for Python: U+200B ZERO WIDTH SPACE and U+FEFF stay inside the token.
  EXPECT_EQ(tokenize_13a("a\u200bb\ufeffc"), "a\u200bb\ufeffc");
  // So a hypothesis with U+202F scores as one with ' ' (and as one with no space: 13a splits "!").
  EXPECT_DOUBLE_EQ(corpus_bleu({"Salut\u202f! Va\u202f! Cours\u202f!"}, {"Salut ! Va ! Cours !"}),
                   100.0);
  EXPECT_DOUBLE_EQ(corpus_bleu({"Salut! Va! Cours!"}, {"Salut ! Va ! Cours !"}), 100.0);
}

// sacreBLEU's test/test_bleu.py: the README example, two reference streams (test_corpus_bleu).
TEST(SacreBleuVectors, CorpusBleuTwoReferenceStreams) {
  const std::vector<std::string> hyps = {"The dog bit the man.", "It wasn't surprising.",
                                         "The man had just bitten him."};
  const std::vector<std::vector<std::string>> refs = {
      {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
      {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};
  EXPECT_NEAR(corpus_bleu_score(hyps, refs, BleuSmoothing::exp).score, 48.530827, 1e-6);
  EXPECT_NEAR(corpus_bleu_score(hyps, refs, BleuSmoothing::none).score, 48.530827, 1e-6);
  // Empty hypotheses are scored, not dropped: 0.
  EXPECT_EQ(corpus_bleu_score({"", "", ""}, refs, BleuSmoothing::exp).score, 0.0);
}

// test_bleu.py test_statistics: "am I am a character sequence" vs "I am a symbol string sequence
// a a": counts [4, 2, 1, 0], totals [6, 5, 4, 3].
TEST(SacreBleuVectors, Statistics) {
  const BleuScore s =
      corpus_bleu_score({"am I am a character sequence"}, {"I am a symbol string sequence a a"});
  EXPECT_EQ(s.matches, (std::array<int64_t, 4>{4, 2, 1, 0}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{6, 5, 4, 3}));
}

// test_bleu.py test_scoring: compute_bleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11) = 0.8375922397
// (as a fraction); and test_case_degenerate_stats' cases that need no 'floor' smoothing.
TEST(SacreBleuVectors, ScoreFromCounts) {
  EXPECT_NEAR(bleu_from_counts({9, 7, 5, 3}, {10, 8, 6, 4}, 11, 11, BleuSmoothing::exp) / 100,
              0.8375922397, 1e-8);
  EXPECT_EQ(bleu_from_counts({0, 0, 0, 0}, {4, 4, 2, 1}, 0, 1, BleuSmoothing::none), 0.0);
  EXPECT_EQ(bleu_from_counts({0, 0, 0, 0}, {10, 11, 12, 0}, 14, 10, BleuSmoothing::none), 0.0);
  EXPECT_EQ(bleu_from_counts({0, 0, 0, 0}, {0, 0, 0, 0}, 0, 0, BleuSmoothing::none), 0.0);
  EXPECT_EQ(bleu_from_counts({6, 5, 4, 0}, {6, 5, 4, 3}, 6, 6, BleuSmoothing::none), 0.0);
}

// sacreBLEU's test/test_sentence_bleu.py (issue #98's example, tokenize 13a, effective order):
// smoothing exp 8.493, none 0.0 (EPSILON 1e-3 there); and #141's zero case.
TEST(SacreBleuVectors, SentenceBleu) {
  const std::string ref =
      "produc\u0163ia de zah\u0103r brut se exprim\u0103 \u00een zah\u0103r alb;";
  const std::string sys =
      "Produc\u021bia de zah\u0103r prim\u0103 va fi exprimat\u0103 \u00een ceea ce "
      "prive\u0219te zah\u0103rul alb;";
  EXPECT_NEAR(sentence_bleu(sys, ref), 8.493, 1e-3);
  const BleuScore s = corpus_bleu_score({sys}, {ref}, BleuSmoothing::none);
  EXPECT_EQ(bleu_from_counts(s.matches, s.totals, s.hypothesis_length, s.reference_length,
                             BleuSmoothing::none, true),
            0.0);
  EXPECT_EQ(sentence_bleu("this is a cat", "okay thanks"), 0.0);
  // Effective order: a 2-token sentence is scored on 1- and 2-grams instead of being 0.
  EXPECT_DOUBLE_EQ(sentence_bleu("a test", "a test"), 100.0);
  EXPECT_EQ(corpus_bleu({"a test"}, {"a test"}, BleuSmoothing::exp), 0.0);
}

// sacreBLEU's test/test_chrf.py. test_cases_effective_order: corpus_chrf with char_order 6,
// beta 3, eps_smoothing False (EPSILON 1e-4 there).
TEST(SacreChrfVectors, EffectiveOrder) {
  ChrfOptions o;
  o.beta = 3;
  EXPECT_NEAR(corpus_chrf({"a"}, {"a"}, o), 100.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({""}, {"reference"}, o), 0.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({"a b c"}, {"a b c"}, o), 100.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({"a b c"}, {"abc"}, o), 100.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({""}, {"c"}, o), 0.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({"a", "b"}, {"a", "c"}, o), 50.0, 1e-4);
  EXPECT_NEAR(corpus_chrf({"aa"}, {"ab"}, o), 25.0, 1e-4);
}

// test_chrf.py test_cases: beta 3 with eps_smoothing True.
TEST(SacreChrfVectors, EpsSmoothing) {
  ChrfOptions o;
  o.beta = 3;
  o.eps_smoothing = true;
  const std::vector<std::tuple<std::string, std::string, double>> cases = {
      {"abcdefg", "hijklmnop", 0.0},
      {"a", "b", 0.0},
      {"", "b", 0.0},
      {"", "ref", 0.0},
      {"", "reference", 0.0},
      {"aa", "ab", 8.3333},
      {"a", "a", 16.6667},
      {"a b c", "a b c", 50.0},
      {"a b c", "abc", 50.0},
      {" risk assessment must be made of those who are qualified and expertise in the sector - "
       "these are the scientists .",
       "risk assessment has to be undertaken by those who are qualified and expert in that area - "
       "that is the scientists .",
       63.361730},
      {" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. ",
       "Das Verh\u00e4ltnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.",
       64.1302698},
      {"Niemand hat die Absicht, eine Mauer zu errichten",
       "Niemand hat die Absicht, eine Mauer zu errichten", 100.0},
  };
  for (const auto& [hyp, ref, expected] : cases) {
    EXPECT_NEAR(corpus_chrf({hyp}, {ref}, o), expected, 1e-4) << hyp;
  }
  EXPECT_NEAR(corpus_chrf({"a", "b"}, {"a", "c"}, o), 8.3333, 1e-4);
}

// test_chrf.py test_cases_keep_whitespace (beta 3, whitespace kept) and
// test_chrf_sentence_level (sentence_chrf with eps_smoothing, default beta 2).
TEST(SacreChrfVectors, KeepWhitespaceAndSentenceLevel) {
  ChrfOptions keep;
  keep.beta = 3;
  keep.remove_whitespace = false;
  EXPECT_NEAR(
      corpus_chrf({"Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."},
                  {"Das Verh\u00e4ltnis zwischen Obama und Netanyahu ist nicht gerade "
                   "freundschaftlich."},
                  keep),
      67.3481606, 1e-4);
  EXPECT_NEAR(corpus_chrf({"risk assessment must be made of those who are qualified and "
                           "expertise in the sector - these are the scientists ."},
                          {"risk assessment has to be undertaken by those who are qualified and "
                           "expert in that area - that is the scientists ."},
                          keep),
              65.2414427, 1e-4);
  ChrfOptions eps;
  eps.eps_smoothing = true;
  EXPECT_NEAR(
      sentence_chrf("Co n\u00e1s nejv\u00edc tr\u00e1p\u00ed, proto\u017ee l\u00e9ka\u0159i "
                    "si vyb\u00edraj\u00ed, kdo bude \u017e\u00edt a kdo zem\u0159e.",
                    "Nejv\u00edce smutn\u00ed jsme z toho, \u017ee mus\u00edme "
                    "rozhodovat o tom, kdo bude \u017e\u00edt a kdo zem\u0159e.",
                    eps),
      39.14078509, 1e-4);
  EXPECT_NEAR(sentence_chrf("Nebo prost\u011b nemaj\u00ed vybaven\u00ed, kter\u00e9 by jim "
                            "pomohlo, uvedli l\u00e9ka\u0159i.",
                            "A n\u011bkdy nem\u00e1me ani pot\u0159ebn\u00fd materi\u00e1l, "
                            "abychom jim pomohli, popsali l\u00e9ka\u0159i.",
                            eps),
              31.22557079, 1e-4);
  EXPECT_NEAR(
      sentence_chrf("Lapali po dechu, jejich \u017eivoty skon\u010dily d\u0159\u00edv, "
                    "ne\u017e skute\u010dn\u011b za\u010daly.",
                    "Lapali po dechu a pak jejich \u017eivot skon\u010dil - d\u0159\u00edv, "
                    "ne\u017e skute\u010dn\u011b mohl za\u010d\u00edt, p\u0159ipomn\u011bli.",
                    eps),
      57.15704367, 1e-4);
}

// The default chrF2 by hand: "chat" vs "chats" (no whitespace): orders 1..4 have 4, 3, 2, 1
// hypothesis n-grams, all matching, out of 5, 4, 3, 2 in the reference; orders 5 and 6 have no
// hypothesis n-gram and are left out. P = 1, R = (4/5 + 3/4 + 2/3 + 1/2) / 4 = 0.679167;
// chrF2 = 100 * 5 P R / (4 P + R). Characters are code points: "é" is one, not two bytes.
TEST(Chrf, DefaultChrf2ByHand) {
  const double r = (0.8 + 0.75 + 2.0 / 3.0 + 0.5) / 4;
  EXPECT_NEAR(sentence_chrf("chat", "chats"), 100 * 5 * r / (4 + r), 1e-12);
  // "été" vs "étés": 3 characters against 4 (6 and 7 bytes), orders 1..3, all matching.
  const double r_ete = (3.0 / 4 + 2.0 / 3 + 1.0 / 2) / 3;
  EXPECT_NEAR(sentence_chrf("\u00e9t\u00e9", "\u00e9t\u00e9s"), 100 * 5 * r_ete / (4 + r_ete),
              1e-12);
  EXPECT_DOUBLE_EQ(sentence_chrf("Va\u202f!", "Va !"), 100.0);  // whitespace removed
  EXPECT_DOUBLE_EQ(corpus_chrf({}, {}), 0.0);
  EXPECT_EQ(error_of([] { corpus_chrf({"a"}, {}); }),
            "corpus_chrf: 1 hypotheses but 0 references (one reference per hypothesis)");
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
