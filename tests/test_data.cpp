// The Seq2Seq data pipeline (models/data): corpus reading, d2l tokenization, vocabulary,
// time-major batches (checked against a transcription of d2l 1.0's _build_arrays) and the
// generated tasks. Error paths are checked for their message.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/number_words.h"
#include "models/data/shuffle.h"
#include "models/data/subword.h"
#include "models/data/tasks.h"
#include "models/data/tokenizer.h"
#include "models/data/vocab.h"
#include "test_util.h"

namespace kiln::data {
namespace {

using kiln::testing::error_of;

using Tokens = std::vector<std::string>;

// A scratch directory per test (pid + test name: ctest may run tests in parallel), removed after.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("kiln_data_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << bytes;
    return file;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// ---- corpus ------------------------------------------------------------------------------------

TEST(Corpus, ReadTsvBomCrlfExtraColumnsBlankLines) {
  TempDir dir;
  const std::string path =
      dir.write("fra.txt",
                "\xEF\xBB\xBFGo.\tVa !\tCC-BY 2.0 (France) #2877272\r\n\r\n  Hi. \t Salut !\r\n"
                "   \t  \nI lost.\tJ'ai perdu.");
  Corpus corpus = read_tsv(path);
  ASSERT_EQ(corpus.pairs.size(), 3u);
  EXPECT_EQ(corpus.pairs[0].source, "Go.");
  EXPECT_EQ(corpus.pairs[0].target, "Va !");
  EXPECT_EQ(corpus.pairs[1].source, "Hi.");
  EXPECT_EQ(corpus.pairs[1].target, "Salut !");
  EXPECT_EQ(corpus.pairs[2].target, "J'ai perdu.");
  EXPECT_EQ(corpus.skipped, 0);
  EXPECT_TRUE(corpus.problems.empty());
  ReadOptions two;
  two.max_pairs = 2;
  EXPECT_EQ(read_tsv(path, two).pairs.size(), 2u);
}

TEST(Corpus, ReadTsvBadLinesAreSkippedWithFileAndLine) {
  TempDir dir;
  const std::string path = dir.write(
      "bad.tsv",
      "Go.\tVa !\nbad \xC3\x28 byte\tx\nno tab here\n  \tcible\nsource\t \nOk.\tD'accord.\n");
  Corpus corpus = read_tsv(path);
  ASSERT_EQ(corpus.pairs.size(), 2u);
  EXPECT_EQ(corpus.pairs[1].target, "D'accord.");
  EXPECT_EQ(corpus.skipped, 4);
  ASSERT_EQ(corpus.problems.size(), 4u);
  EXPECT_EQ(corpus.problems[0], path + ":2: invalid UTF-8 at byte 5 of the line (0xC3)");
  EXPECT_EQ(corpus.problems[1], path + ":3: no tab between source and target");
  EXPECT_EQ(corpus.problems[2], path + ":4: empty source side");
  EXPECT_EQ(corpus.problems[3], path + ":5: empty target side");

  ReadOptions strict;
  strict.skip_bad_lines = false;
  EXPECT_EQ(error_of([&] { read_tsv(path, strict); }),
            path + ":2: invalid UTF-8 at byte 5 of the line (0xC3)");
}

TEST(Corpus, ProblemsKeepOnlyTheFirstTwenty) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 25; ++i) text += "no tab\n";
  Corpus corpus = read_tsv(dir.write("many.tsv", text));
  EXPECT_EQ(corpus.skipped, 25);
  ASSERT_EQ(corpus.problems.size(), Corpus::max_problems_kept);
  EXPECT_CONTAINS(corpus.problems.back(), "many.tsv:20: no tab");
}

TEST(Corpus, MissingFileNamesPathAndReason) {
  std::string msg = error_of([] { read_tsv("/nonexistent/fra.txt"); });
  EXPECT_EQ(msg, "read_tsv: cannot open '/nonexistent/fra.txt': No such file or directory");
  msg = error_of([] { read_parallel("/nonexistent/a.en", "/nonexistent/a.fr"); });
  EXPECT_CONTAINS(msg, "read_parallel: cannot open '/nonexistent/a.en'");
}

TEST(Corpus, ReadParallel) {
  TempDir dir;
  const std::string en = dir.write("a.en", "Go.\r\n\r\nHi.\nI lost.\nBad.\n");
  const std::string fr = dir.write("a.fr", "Va !\r\n\r\nSalut !\n\nMauvais \xED\xA0\x80.\n");
  Corpus corpus = read_parallel(en, fr);
  ASSERT_EQ(corpus.pairs.size(), 2u);
  EXPECT_EQ(corpus.pairs[1].source, "Hi.");
  EXPECT_EQ(corpus.pairs[1].target, "Salut !");
  EXPECT_EQ(corpus.skipped, 2);
  ASSERT_EQ(corpus.problems.size(), 2u);
  EXPECT_EQ(corpus.problems[0], fr + ":4: empty target sentence (its source is not empty)");
  EXPECT_EQ(corpus.problems[1], fr + ":5: invalid UTF-8 at byte 9 of the line (0xED)");

  const std::string short_fr = dir.write("b.fr", "Va !\nSalut !\n");
  EXPECT_EQ(error_of([&] { read_parallel(en, short_fr); }),
            "read_parallel: '" + en + "' has 5 lines but '" + short_fr +
                "' has 2; the files must be line-aligned");
}

TEST(Corpus, ValidUtf8IsStrict) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {"", true},
      {"plain ascii", true},
      {"\xC3\xA9t\xC3\xA9", true},  // été
      {"\xE2\x82\xAC", true},       // €
      {"\xF0\x9F\x98\x80", true},   // U+1F600
      {"\xF4\x8F\xBF\xBF", true},   // U+10FFFF
      {"\xC0\x80", false},          // overlong NUL
      {"\xC1\xBF", false},          // overlong
      {"\xE0\x80\x80", false},      // overlong
      {"\xF0\x80\x80\x80", false},  // overlong
      {"\xED\xA0\x80", false},      // surrogate U+D800
      {"\xED\xBF\xBF", false},      // surrogate U+DFFF
      {"\xF4\x90\x80\x80", false},  // U+110000
      {"\xF5\x80\x80\x80", false},  // beyond the encoding range
      {"\x80", false},              // lone continuation byte
      {"\xE2\x82", false},          // truncated
      {"a\xC3", false},             // truncated at the end
      {"\xC3\x28", false},          // continuation missing
  };
  for (const auto& [text, valid] : cases) EXPECT_EQ(valid_utf8(text), valid) << "case: " << text;
}

TEST(Corpus, SplitPairsInFileOrder) {
  std::vector<SentencePair> pairs;
  for (int i = 0; i < 10; ++i) pairs.push_back({std::to_string(i), "t" + std::to_string(i)});
  Split split = split_pairs(pairs, 5, 3);
  ASSERT_EQ(split.train.size(), 5u);
  ASSERT_EQ(split.valid.size(), 3u);
  ASSERT_EQ(split.test.size(), 2u);
  EXPECT_EQ(split.train[0].source, "0");
  EXPECT_EQ(split.valid[0].source, "5");
  EXPECT_EQ(split.test[1].source, "9");
  EXPECT_EQ(split_pairs(pairs, 5, 3, 1).test.size(), 1u);
  EXPECT_EQ(error_of([&] { split_pairs(pairs, 8, 3, 1); }),
            "split_pairs: asked for 8 train + 3 valid + 1 test = 12 pairs, but there are only 10");
  EXPECT_CONTAINS(error_of([&] { split_pairs(pairs, 8, 3); }), "= 11 pairs (and the rest as test)");
}

// ---- tokenizer ----------------------------------------------------------------------------------

TEST(Tokenizer, D2lExamples) {
  TempDir dir;
  const std::string path = dir.write("fra.txt",
                                     "Go.\tVa !\nI lost.\tJ'ai perdu.\n"
                                     "He's calm.\tIl est calme.\nI'm home.\tJe suis chez moi.\n");
  TokenizedPairs tokens = tokenize_pairs(read_tsv(path).pairs);
  EXPECT_EQ(tokens.source[0], (Tokens{"go", "."}));
  EXPECT_EQ(tokens.target[0], (Tokens{"va", "!"}));
  EXPECT_EQ(tokens.source[1], (Tokens{"i", "lost", "."}));
  EXPECT_EQ(tokens.target[1], (Tokens{"j'ai", "perdu", "."}));
  EXPECT_EQ(tokens.source[2], (Tokens{"he's", "calm", "."}));
  EXPECT_EQ(tokens.target[2], (Tokens{"il", "est", "calme", "."}));
  EXPECT_EQ(tokens.target[3], (Tokens{"je", "suis", "chez", "moi", "."}));
  EXPECT_EQ(tokenize_d2l("Je suis calme."), (Tokens{"je", "suis", "calme", "."}));
  EXPECT_EQ(tokenize_d2l("Va\u202f!"), (Tokens{"va", "!"}));
  EXPECT_EQ(tokenize_d2l("Qui\u00a0?"), (Tokens{"qui", "?"}));
}

TEST(Tokenizer, PreprocessRules) {
  EXPECT_EQ(preprocess_d2l("Go."), "go .");
  EXPECT_EQ(preprocess_d2l("Hi!!"), "hi ! !");  // the second '!' follows '!', not ' '
  EXPECT_EQ(preprocess_d2l(".Hi"), ".hi");      // nothing is inserted at position 0
  EXPECT_EQ(preprocess_d2l("Oui, non ."), "oui , non .");
  EXPECT_EQ(preprocess_d2l("Va\u202f!"), "va !");
  EXPECT_EQ(preprocess_d2l("\u00c9T\u00c9 \u00c0 PARIS \u00d7 \u00dfE"),
            "\u00e9t\u00e9 \u00e0 paris \u00d7 \u00dfe");
  EXPECT_EQ(preprocess_d2l("\u0152UVRE \u0178 \u0141\u00d3D\u0179"),
            "\u0153uvre \u00ff \u0142\u00f3d\u017a");
  EXPECT_EQ(preprocess_d2l("\u0130"), "i\u0307");  // as Python's str.lower()
  EXPECT_EQ(preprocess_d2l("\u041f\u0440\u0438\u0432\u0435\u0442 \u0401"),
            "\u043f\u0440\u0438\u0432\u0435\u0442 \u0451");
  EXPECT_EQ(preprocess_d2l("bad \xFF byte."), "bad \xFF byte .");  // invalid bytes pass through
  EXPECT_EQ(tokenize_words("  a  b "), (Tokens{"a", "b"}));
  EXPECT_TRUE(tokenize_words("").empty());
  EXPECT_EQ(detokenize({"j'ai", "perdu", "."}), "j'ai perdu .");
  EXPECT_EQ(detokenize({}), "");
}

// Case is kept unless asked (TrainOptions::lowercase; d2l always lowercases).
TEST(Tokenizer, CaseKeptOrLowercased) {
  EXPECT_EQ(tokenize_d2l("Qu'est-ce que c'est\u202f?", false),
            (Tokens{"Qu'est-ce", "que", "c'est", "?"}));
  EXPECT_EQ(tokenize_d2l("Qu'est-ce que c'est\u202f?", true),
            (Tokens{"qu'est-ce", "que", "c'est", "?"}));
  EXPECT_EQ(preprocess_d2l("\u00c9T\u00c9 \u00e0 Paris.", false), "\u00c9T\u00c9 \u00e0 Paris .");
  EXPECT_EQ(WordTokenizer(false).tokenize("Tom est l\u00e0."),
            (Tokens{"Tom", "est", "l\u00e0", "."}));
  EXPECT_EQ(WordTokenizer(true).tokenize("Tom est l\u00e0."),
            (Tokens{"tom", "est", "l\u00e0", "."}));
}

// fra.txt's targets: no space before . and , ; before ! and ? a ' ', U+202F or U+00A0, the most
// common of which is learned; marks after marks and at the start do not count.
TEST(Tokenizer, LearnPunctuationSpacing) {
  const PunctuationSpacing spacing = learn_punctuation_spacing(
      {"Va\u202f!", "Salut\u202f!", "Cours !", "J'ai perdu.", "Qu'est-ce que c'est\u202f?",
       "Qui\u00a0?", "Oui, merci.", "Quoi\u202f?!", "...", "Attends..."});
  EXPECT_EQ(spacing, (PunctuationSpacing{{",", ""}, {".", ""}, {"!", "\u202f"}, {"?", "\u202f"}}));
  // English: nothing before any mark. A tie goes to the first of "", " ", U+202F, U+00A0.
  EXPECT_EQ(learn_punctuation_spacing({"Go.", "Run!", "Who?", "Hi, Tom."}),
            (PunctuationSpacing{{",", ""}, {".", ""}, {"!", ""}, {"?", ""}}));
  EXPECT_EQ(learn_punctuation_spacing({"A !", "B\u00a0!"}), (PunctuationSpacing{{"!", " "}}));
  EXPECT_TRUE(learn_punctuation_spacing({"Bonjour", "", "!"}).empty());
}

// Detokenizing gives back fra.txt's lines, cased and spaced as they were, from their tokens.
TEST(Tokenizer, DetokenizeRoundTripsFraLines) {
  const std::vector<std::string> french = {"Va\u202f!",
                                           "J'ai perdu.",
                                           "Qu'est-ce que c'est\u202f?",
                                           "Il a 3.5 ans, je crois.",
                                           "Attends... Quoi\u202f?!",
                                           "Je l'ai vu \u00e0 Paris, en 1,000 ans."};
  const PunctuationSpacing fr = learn_punctuation_spacing(french);
  const WordTokenizer words(false, fr);
  for (const std::string& line : french) {
    EXPECT_EQ(words.detokenize(words.tokenize(line)), line) << line;
  }
  const std::vector<std::string> english = {"Go.", "I lost.", "Who?", "Wait, what?!", "Hi..."};
  const WordTokenizer en(false, learn_punctuation_spacing(english));
  for (const std::string& line : english) {
    EXPECT_EQ(en.detokenize(en.tokenize(line)), line) << line;
  }
  // A regular space is learned and restored as such; an unseen mark keeps d2l's ' '.
  EXPECT_EQ(detokenize_d2l({"Va", "!"}, {{"!", " "}}), "Va !");
  EXPECT_EQ(detokenize_d2l({"Go", "."}, {}), "Go .");
  EXPECT_EQ(detokenize_d2l({}, fr), "");
  EXPECT_EQ(detokenize_d2l({"?", "Oui"}, fr), "? Oui");
  // Lowercased training keeps lowercase output (d2l's presets), spacing restored all the same.
  const WordTokenizer lower(true, fr);
  EXPECT_EQ(lower.detokenize(lower.tokenize("Qu'est-ce que c'est\u202f?")),
            "qu'est-ce que c'est\u202f?");
  EXPECT_TRUE(is_punctuation_separator("\u00a0"));
  EXPECT_FALSE(is_punctuation_separator("\t"));
}

// SentencePiece trained on cased, d2l-spaced text decodes to that text, and the learned spacing
// then gives the original line back.
TEST(Tokenizer, SentencePieceDecodesToNormalText) {
  TempDir dir;
  const std::vector<std::string> french = {
      "Va\u202f!",    "J'ai perdu.",        "Qu'est-ce que c'est\u202f?",
      "Tom est ici.", "Qui est Tom\u202f?", "Je suis chez moi."};
  const std::string model = dir.path("target.spm.model");
  SentencePieceTokenizer::train(french, 40, model, /*lowercase=*/false);
  const SentencePieceTokenizer pieces(model, false, learn_punctuation_spacing(french));
  for (const std::string& line : french) {
    EXPECT_EQ(pieces.detokenize(pieces.tokenize(line)), line) << line;
  }
  EXPECT_EQ(pieces.tokenize("Tom est ici !"), pieces.tokenize("Tom est ici !"));
}

// ---- vocab --------------------------------------------------------------------------------------

TEST(Vocab, BuildOrdersByFrequencyThenToken) {
  const std::vector<Tokens> sequences = {{"b", "a", "d", "a"}, {"b", "a", "c", "<eos>"}};
  Vocab vocab = Vocab::build(sequences);
  EXPECT_EQ(vocab.tokens(), (Tokens{"<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c", "d"}));
  EXPECT_EQ(Vocab::build(sequences, 2).tokens(),
            (Tokens{"<pad>", "<unk>", "<bos>", "<eos>", "a", "b"}));
  EXPECT_EQ(Vocab::build(sequences, 1, 5).size(), 5);
  EXPECT_EQ(vocab.id("c"), 6);
  EXPECT_EQ(vocab.id("zzz"), Vocab::unk_id);
  EXPECT_EQ(vocab.token(7), "d");
  EXPECT_EQ(vocab.encode({"a", "zzz", "d"}), (std::vector<int64_t>{4, 1, 7}));
  EXPECT_EQ(vocab.decode({2, 4, 1, 0, 5, 3, 6}), (Tokens{"a", "<unk>", "b"}));
  EXPECT_EQ(vocab.decode({2, 4, 3, 0}, false), (Tokens{"<bos>", "a", "<eos>", "<pad>"}));
  EXPECT_EQ(Vocab().size(), 4);
}

TEST(Vocab, Errors) {
  Vocab vocab = Vocab::build({{"a"}});
  EXPECT_EQ(
      error_of([&] { vocab.token(5); }),
      "Vocab::token: id 5 is out of range for a vocabulary of 5 tokens (expected 0 <= id < 5)");
  EXPECT_CONTAINS(error_of([&] { vocab.decode({4, -1}); }), "Vocab::decode: id -1 at position 1");
  EXPECT_EQ(error_of([] {
              Vocab::build({{"a", "x\ny"}});
            }),
            "Vocab::build: sequence 0 token 1 'x\ny' contains a line break");
  EXPECT_CONTAINS(error_of([] { Vocab::build({{"a"}}, 0); }), "min_freq must be >= 1");
  EXPECT_CONTAINS(error_of([] {
                    Vocab::from_tokens({"<pad>", "<unk>", "<eos>", "<bos>"});
                  }),
                  "token 2 is '<eos>', expected the reserved '<bos>'");
}

TEST(Vocab, SaveLoadRoundTrip) {
  TempDir dir;
  Vocab vocab =
      Vocab::build({tokenize_d2l("J'ai été à Paris, vraiment été."), {"\xF0\x9F\x98\x80"}});
  const std::string path = dir.path("fr.vocab");
  vocab.save(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  Vocab loaded = Vocab::load(path);
  EXPECT_EQ(loaded, vocab);
  EXPECT_EQ(loaded.id("été"), vocab.id("été"));
  EXPECT_EQ(loaded.id("été"), 4);  // the most frequent token
  vocab.save(path);                // overwriting works too
  EXPECT_EQ(Vocab::load(path), vocab);
  // CRLF and a BOM, as an editor might leave them, still load.
  EXPECT_EQ(
      Vocab::load(dir.write("crlf.vocab", "\xEF\xBB\xBF<pad>\r\n<unk>\r\n<bos>\r\n<eos>\r\nx\r\n"))
          .size(),
      5);
}

TEST(Vocab, LoadValidatesWithFileAndLine) {
  TempDir dir;
  std::string path = dir.write("a.vocab", "<pad>\n<bos>\n<unk>\n<eos>\n");
  EXPECT_EQ(
      error_of([&] { Vocab::load(path); }),
      "Vocab::load: " + path + ":2: expected the reserved token '<unk>' (id 1), found '<bos>'");
  path = dir.write("b.vocab", "<pad>\n<unk>\n<bos>\n<eos>\na\nb\na\n");
  EXPECT_EQ(error_of([&] { Vocab::load(path); }),
            "Vocab::load: " + path + ":7: duplicate token 'a' (first at line 5)");
  path = dir.write("c.vocab", "<pad>\n<unk>\n<bos>\n<eos>\na\n\nb\n");
  EXPECT_EQ(error_of([&] { Vocab::load(path); }), "Vocab::load: " + path + ":6: empty line");
  path = dir.write("d.vocab", "<pad>\n<unk>\n");
  EXPECT_CONTAINS(error_of([&] { Vocab::load(path); }),
                  "has 2 tokens, expected at least the 4 reserved");
  path = dir.write("e.vocab", "<pad>\n<unk>\n<bos>\n<eos>\n\xC3\x28\n");
  EXPECT_EQ(error_of([&] { Vocab::load(path); }),
            "Vocab::load: " + path + ":5: invalid UTF-8 at byte 1");
  EXPECT_CONTAINS(error_of([&] { Vocab::load(dir.path("missing.vocab")); }),
                  "No such file or directory");
}

// ---- batching -----------------------------------------------------------------------------------

// d2l 1.0 MTFraEng._build_arrays for one pair, transcribed: tokens + ['<eos>'], then
// seq[:t] if len(seq) > t else seq + ['<pad>'] * (t - len(seq)); the target gets '<bos>' in front,
// target_in = array[:-1], target_out = array[1:]; src_valid_len counts the non-<pad> ids.
struct D2lArrays {
  std::vector<int64_t> source, target_in, target_out;
  int64_t source_valid_len = 0;
};
D2lArrays d2l_build_arrays(const EncodedPair& pair, int64_t num_steps) {
  const auto pad_or_trim = [&](std::vector<int64_t> seq) {
    seq.push_back(Vocab::eos_id);
    seq.resize(static_cast<size_t>(num_steps), Vocab::pad_id);  // cuts or pads
    return seq;
  };
  D2lArrays out;
  out.source = pad_or_trim(pair.source);
  out.source_valid_len = std::count_if(out.source.begin(), out.source.end(),
                                       [](int64_t id) { return id != Vocab::pad_id; });
  std::vector<int64_t> target = pad_or_trim(pair.target);
  target.insert(target.begin(), Vocab::bos_id);
  out.target_in.assign(target.begin(), target.end() - 1);
  out.target_out.assign(target.begin() + 1, target.end());
  return out;
}

// Column b of a [steps, B] tensor.
template <class T> std::vector<T> column(const Tensor& tensor, int64_t b) {
  const std::vector<T> values = tensor.to_vector<T>();
  const int64_t steps = tensor.size(0), batch = tensor.size(1);
  std::vector<T> out;
  for (int64_t t = 0; t < steps; ++t) out.push_back(values[static_cast<size_t>(t * batch + b)]);
  return out;
}

std::vector<EncodedPair> random_pairs(int64_t count, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<EncodedPair> pairs(static_cast<size_t>(count));
  for (EncodedPair& pair : pairs) {
    for (uint64_t i = 0, n = uniform_below(generator, 13); i < n; ++i) {
      pair.source.push_back(4 + static_cast<int64_t>(uniform_below(generator, 30)));
    }
    for (uint64_t i = 0, n = uniform_below(generator, 13); i < n; ++i) {
      pair.target.push_back(4 + static_cast<int64_t>(uniform_below(generator, 30)));
    }
  }
  return pairs;
}

std::vector<int64_t> all_indices(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const Batch& batch : batches)
    out.insert(out.end(), batch.indices.begin(), batch.indices.end());
  return out;
}

TEST(Batching, DynamicLengthLayout) {
  const std::vector<EncodedPair> pairs = {
      {{5, 6}, {7}}, {{8}, {9, 10, 11}}, {{12, 13, 14}, {15, 16}}};
  BatchOptions options;
  options.batch_size = 3;
  options.shuffle = false;
  options.bucket_by_length = false;
  const std::vector<Batch> batches = make_batches(pairs, options);
  ASSERT_EQ(batches.size(), 1u);
  const Batch& batch = batches[0];
  EXPECT_EQ(batch.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(batch.source.shape(), (Shape{4, 3}));
  EXPECT_EQ(batch.source.dtype(), DType::i64);
  // Columns: 5 6 <eos> | 8 <eos> | 12 13 14 <eos>, time-major.
  EXPECT_EQ(batch.source.to_vector<int64_t>(),
            (std::vector<int64_t>{5, 8, 12, 6, 3, 13, 3, 0, 14, 0, 0, 3}));
  EXPECT_EQ(batch.source_lengths.to_vector<int64_t>(), (std::vector<int64_t>{3, 2, 4}));
  EXPECT_EQ(batch.target_out.shape(), (Shape{4, 3}));
  EXPECT_EQ(batch.target_out.to_vector<int64_t>(),
            (std::vector<int64_t>{7, 9, 15, 3, 10, 16, 0, 11, 3, 0, 3, 0}));
  EXPECT_EQ(batch.target_in.to_vector<int64_t>(),
            (std::vector<int64_t>{2, 2, 2, 7, 9, 15, 3, 10, 16, 0, 11, 3}));
  EXPECT_EQ(batch.target_mask.dtype(), DType::f32);
  EXPECT_EQ(batch.target_mask.to_vector<float>(),
            (std::vector<float>{1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0}));
  EXPECT_EQ(batch.num_target_tokens, 9);

  options.source_eos = false;
  const Batch no_eos = make_batches(pairs, options)[0];
  EXPECT_EQ(no_eos.source.to_vector<int64_t>(),
            (std::vector<int64_t>{5, 8, 12, 6, 0, 13, 0, 0, 14}));
  EXPECT_EQ(no_eos.source_lengths.to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 3}));
}

TEST(Batching, NumStepsMatchesD2lTruncatePad) {
  const std::vector<EncodedPair> pairs = random_pairs(200, 7);  // lengths 0..12 around num_steps 6
  for (int64_t num_steps : {1, 6, 20}) {
    BatchOptions options;
    options.batch_size = 16;
    options.num_steps = num_steps;
    options.seed = 3;
    for (const Batch& batch : make_batches(pairs, options)) {
      ASSERT_EQ(batch.source.shape(),
                (Shape{num_steps, static_cast<int64_t>(batch.indices.size())}));
      ASSERT_EQ(batch.target_in.shape(), batch.target_out.shape());
      ASSERT_EQ(batch.target_out.size(0), num_steps);
      const std::vector<int64_t> lengths = batch.source_lengths.to_vector<int64_t>();
      int64_t tokens = 0;
      for (size_t b = 0; b < batch.indices.size(); ++b) {
        const auto col = static_cast<int64_t>(b);
        const D2lArrays d2l =
            d2l_build_arrays(pairs[static_cast<size_t>(batch.indices[b])], num_steps);
        EXPECT_EQ(column<int64_t>(batch.source, col), d2l.source) << "pair " << batch.indices[b];
        EXPECT_EQ(lengths[b], d2l.source_valid_len);
        EXPECT_EQ(column<int64_t>(batch.target_in, col), d2l.target_in)
            << "pair " << batch.indices[b];
        EXPECT_EQ(column<int64_t>(batch.target_out, col), d2l.target_out)
            << "pair " << batch.indices[b];
        const std::vector<float> mask = column<float>(batch.target_mask, col);
        for (size_t t = 0; t < mask.size(); ++t) {
          EXPECT_EQ(mask[t], d2l.target_out[t] != Vocab::pad_id ? 1.0f : 0.0f);
          tokens += d2l.target_out[t] != Vocab::pad_id;
        }
      }
      EXPECT_EQ(batch.num_target_tokens, tokens);
    }
  }
}

TEST(Batching, EveryPairExactlyOnce) {
  const std::vector<EncodedPair> pairs = random_pairs(103, 1);
  std::vector<int64_t> expected(pairs.size());
  std::iota(expected.begin(), expected.end(), int64_t{0});
  for (bool bucket : {true, false}) {
    for (bool shuffle : {true, false}) {
      BatchOptions options;
      options.batch_size = 10;
      options.bucket_by_length = bucket;
      options.shuffle = shuffle;
      const std::vector<Batch> batches = make_batches(pairs, options);
      ASSERT_EQ(batches.size(), 11u);
      std::vector<int64_t> seen = all_indices(batches);
      if (!bucket && !shuffle) {
        EXPECT_EQ(seen, expected);  // file order
      }
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(seen, expected) << "bucket " << bucket << " shuffle " << shuffle;
      options.drop_last = true;
      const std::vector<Batch> dropped = make_batches(pairs, options);
      ASSERT_EQ(dropped.size(), 10u);
      for (const Batch& batch : dropped) EXPECT_EQ(batch.indices.size(), 10u);
      const std::vector<int64_t> kept = all_indices(dropped);
      EXPECT_EQ(std::set<int64_t>(kept.begin(), kept.end()).size(), 100u);
    }
  }
}

// Issue 13: data parallelism cuts each global batch into one run of columns per rank. Over an
// epoch, the ranks' shares hold every pair exactly once, the runs are consecutive, and each is
// within one pair's tokens of an equal share of the batch's target tokens.
TEST(Batching, RankSharesCoverEveryPairOncePerEpoch) {
  const std::vector<EncodedPair> pairs = random_pairs(203, 5);
  std::vector<int64_t> expected(pairs.size());
  std::iota(expected.begin(), expected.end(), int64_t{0});
  for (int64_t batch_tokens : {int64_t{0}, int64_t{120}}) {
    for (int world : {1, 2, 3, 8}) {
      SCOPED_TRACE("batch_tokens " + std::to_string(batch_tokens) + ", " + std::to_string(world) +
                   " ranks");
      BatchOptions options;
      options.batch_size = 10;
      options.batch_tokens = batch_tokens;
      options.seed = 11;
      std::vector<int64_t> seen;
      for (const std::vector<int64_t>& global : plan_batches(pairs, options)) {
        const int64_t total = count_target_tokens(pairs, global, options);
        int64_t longest = 0;
        for (int64_t index : global)
          longest = std::max(longest, count_target_tokens(pairs, {index}, options));
        size_t next = 0;
        int64_t counted = 0;
        for (int rank = 0; rank < world; ++rank) {
          auto [begin, end] = rank_share(pairs, global, options, rank, world);
          ASSERT_EQ(begin, next);  // consecutive, in rank order
          ASSERT_LE(begin, end);
          next = end;
          std::vector<int64_t> mine(global.begin() + begin, global.begin() + end);
          seen.insert(seen.end(), mine.begin(), mine.end());
          const int64_t tokens = count_target_tokens(pairs, mine, options);
          counted += tokens;
          if (static_cast<int64_t>(global.size()) >= world) {  // else some rank gets nothing
            EXPECT_LE(std::abs(tokens * world - total), longest * world) << "rank " << rank;
          }
          if (!mine.empty()) {
            EXPECT_EQ(make_batch(pairs, mine, options).num_target_tokens, tokens);
          }
        }
        EXPECT_EQ(next, global.size());
        EXPECT_EQ(counted, total);
      }
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(seen, expected);
    }
  }
  EXPECT_THROW(rank_share(pairs, {0, 1}, BatchOptions{}, 2, 2), Error);
}

TEST(Batching, BucketsHoldSimilarLengths) {
  const std::vector<EncodedPair> pairs = random_pairs(100, 2);
  BatchOptions options;
  options.batch_size = 8;
  options.shuffle = false;
  const std::vector<int64_t> order = all_indices(make_batches(pairs, options));
  for (size_t i = 1; i < order.size(); ++i) {
    const EncodedPair& a = pairs[static_cast<size_t>(order[i - 1])];
    const EncodedPair& b = pairs[static_cast<size_t>(order[i])];
    const auto key_a = std::make_tuple(a.source.size(), a.target.size(), order[i - 1]);
    const auto key_b = std::make_tuple(b.source.size(), b.target.size(), order[i]);
    EXPECT_LT(key_a, key_b) << "sorted by (source length, target length), stable";
  }
}

TEST(Batching, DeterministicForASeed) {
  const std::vector<EncodedPair> pairs = random_pairs(100, 3);
  for (bool bucket : {true, false}) {
    BatchOptions options;
    options.batch_size = 10;
    options.bucket_by_length = bucket;
    options.seed = 11;
    const std::vector<Batch> a = make_batches(pairs, options), b = make_batches(pairs, options);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].indices, b[i].indices);
      EXPECT_EQ(a[i].source.to_vector<int64_t>(), b[i].source.to_vector<int64_t>());
    }
    options.seed = 12;
    EXPECT_NE(all_indices(a), all_indices(make_batches(pairs, options))) << "bucket " << bucket;
  }
}

// The draws are ours (not std::uniform_int_distribution / std::shuffle), so they are the same
// with every standard library; these values pin them.
TEST(Batching, ShuffleIsPinned) {
  std::mt19937_64 standard;
  standard.discard(9999);
  EXPECT_EQ(standard(), 9981545732273789042ull);  // required by the C++ standard
  std::mt19937_64 generator(0);
  std::vector<int> items = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  shuffle_in_place(items, generator);
  EXPECT_EQ(items, (std::vector<int>{7, 2, 0, 8, 3, 9, 6, 1, 5, 4}));
}

TEST(Batching, Errors) {
  const std::vector<EncodedPair> pairs = {{{5, 0}, {6}}};
  BatchOptions options;
  EXPECT_EQ(
      error_of([&] { make_batches(pairs, options); }),
      "make_batches: pair 0 source position 1 holds id 0 (<pad>); encoded sentences need ids > 0, "
      "<pad> = 0 marks padding");
  options.batch_size = 0;
  EXPECT_CONTAINS(error_of([&] { make_batches({}, options); }), "batch_size must be >= 1, got 0");
  options.batch_size = 4;
  options.num_steps = 0;
  EXPECT_CONTAINS(error_of([&] { make_batches({}, options); }), "num_steps must be -1");
}

TEST(Batching, OnCuda) {
  KILN_REQUIRE_GPU();
  const std::vector<EncodedPair> pairs = random_pairs(20, 4);
  BatchOptions options;
  options.batch_size = 6;
  const std::vector<Batch> cpu = make_batches(pairs, options);
  const std::vector<Batch> gpu = make_batches(pairs, options, Device::cuda());
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_TRUE(gpu[i].source.device().is_cuda());
    EXPECT_TRUE(gpu[i].target_mask.device().is_cuda());
    EXPECT_EQ(gpu[i].source.to_vector<int64_t>(), cpu[i].source.to_vector<int64_t>());
    EXPECT_EQ(gpu[i].target_in.to_vector<int64_t>(), cpu[i].target_in.to_vector<int64_t>());
    EXPECT_EQ(gpu[i].target_mask.to_vector<float>(), cpu[i].target_mask.to_vector<float>());
  }
}

TEST(Batching, EncodePairsThroughTheVocabulary) {
  const TokenizedPairs tokens = tokenize_pairs({{"Go.", "Va !"}, {"Hi.", "Salut !"}});
  const Vocab source = Vocab::build(tokens.source), target = Vocab::build(tokens.target);
  const std::vector<EncodedPair> pairs = encode_pairs(tokens.source, tokens.target, source, target);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(source.decode(pairs[0].source), (Tokens{"go", "."}));
  EXPECT_EQ(target.decode(pairs[1].target), (Tokens{"salut", "!"}));
}

// ---- generated tasks ----------------------------------------------------------------------------

TEST(Tasks, NumberWords) {
  const std::map<int64_t, std::pair<std::string, std::string>> expected = {
      {0, {"zero", "zéro"}},
      {7, {"seven", "sept"}},
      {10, {"ten", "dix"}},
      {16, {"sixteen", "seize"}},
      {17, {"seventeen", "dix-sept"}},
      {21, {"twenty one", "vingt et un"}},
      {31, {"thirty one", "trente et un"}},
      {70, {"seventy", "soixante-dix"}},
      {71, {"seventy one", "soixante et onze"}},
      {77, {"seventy seven", "soixante-dix-sept"}},
      {80, {"eighty", "quatre-vingts"}},
      {81, {"eighty one", "quatre-vingt-un"}},
      {91, {"ninety one", "quatre-vingt-onze"}},
      {99, {"ninety nine", "quatre-vingt-dix-neuf"}},
      {100, {"one hundred", "cent"}},
      {101, {"one hundred one", "cent un"}},
      {200, {"two hundred", "deux cents"}},
      {201, {"two hundred one", "deux cent un"}},
      {280, {"two hundred eighty", "deux cent quatre-vingts"}},
      {1000, {"one thousand", "mille"}},
      {1080, {"one thousand eighty", "mille quatre-vingts"}},
      {1234, {"one thousand two hundred thirty four", "mille deux cent trente-quatre"}},
      {1999, {"one thousand nine hundred ninety nine", "mille neuf cent quatre-vingt-dix-neuf"}},
      {2000, {"two thousand", "deux mille"}},
      {2024, {"two thousand twenty four", "deux mille vingt-quatre"}},
      {2200, {"two thousand two hundred", "deux mille deux cents"}},
      {9999,
       {"nine thousand nine hundred ninety nine", "neuf mille neuf cent quatre-vingt-dix-neuf"}},
      {80000, {"eighty thousand", "quatre-vingt mille"}},
      {200000, {"two hundred thousand", "deux cent mille"}},
  };
  for (const auto& [n, words] : expected) {
    EXPECT_EQ(number_to_english(n), words.first) << n;
    EXPECT_EQ(number_to_french(n), words.second) << n;
  }
  EXPECT_EQ(tokenize_words(number_to_french(1999)),
            (Tokens{"mille", "neuf", "cent", "quatre-vingt-dix-neuf"}));
  EXPECT_CONTAINS(error_of([] { number_to_french(1000000); }),
                  "outside the supported range 0..999999");
}

TEST(Tasks, NamesAndErrors) {
  EXPECT_EQ(task_names(), (Tokens{"copy", "reverse", "numbers-en", "numbers-fr", "dates"}));
  EXPECT_EQ(error_of([] { generate_task("sort", 3, 0); }),
            "generate_task: unknown task 'sort'; known tasks: copy, reverse, numbers-en, "
            "numbers-fr, dates");
  EXPECT_CONTAINS(error_of([] { generate_task("copy", -1, 0); }), "count must be >= 0");
}

TEST(Tasks, DeterministicBySeed) {
  for (const std::string& name : task_names()) {
    const std::vector<SentencePair> a = generate_task(name, 50, 5), b = generate_task(name, 50, 5);
    const std::vector<SentencePair> c = generate_task(name, 50, 6);
    bool same = true, differs = false;
    for (size_t i = 0; i < a.size(); ++i) {
      same = same && a[i].source == b[i].source && a[i].target == b[i].target;
      differs = differs || a[i].source != c[i].source;
    }
    EXPECT_TRUE(same) << name;
    EXPECT_TRUE(differs) << name;
  }
}

TEST(Tasks, CopyAndReverse) {
  const std::vector<SentencePair> copies = generate_task("copy", 200, 1);
  const std::vector<SentencePair> reversed = generate_task("reverse", 200, 1);
  std::set<size_t> lengths;
  std::set<std::string> symbols;
  for (size_t i = 0; i < copies.size(); ++i) {
    EXPECT_EQ(copies[i].target, copies[i].source);
    Tokens tokens = tokenize_words(reversed[i].source);
    lengths.insert(tokens.size());
    symbols.insert(tokens.begin(), tokens.end());
    std::reverse(tokens.begin(), tokens.end());
    EXPECT_EQ(tokenize_words(reversed[i].target), tokens);
  }
  EXPECT_EQ(*lengths.begin(), 3u);
  EXPECT_EQ(*lengths.rbegin(), 10u);
  EXPECT_EQ(symbols.size(), 20u);
  EXPECT_EQ(*symbols.begin(), "a");
  EXPECT_EQ(*symbols.rbegin(), "t");
}

TEST(Tasks, NumbersAndDates) {
  const std::vector<SentencePair> en = generate_task("numbers-en", 100, 9);
  const std::vector<SentencePair> fr = generate_task("numbers-fr", 100, 9);
  for (size_t i = 0; i < en.size(); ++i) {
    std::string digits;
    for (const std::string& token : tokenize_words(en[i].source)) digits += token;
    const int64_t n = std::stoll(digits);
    EXPECT_EQ(std::to_string(n), digits);  // no leading zeros
    EXPECT_EQ(en[i].target, number_to_english(n));
    EXPECT_EQ(fr[i].source, en[i].source);  // same seed, same numbers
    EXPECT_EQ(fr[i].target, number_to_french(n));
  }
  const Tokens months = {"january", "february", "march",     "april",   "may",      "june",
                         "july",    "august",   "september", "october", "november", "december"};
  for (const SentencePair& pair : generate_task("dates", 300, 2)) {
    std::string iso;
    for (const std::string& token : tokenize_words(pair.source)) iso += token;
    ASSERT_EQ(iso.size(), 10u) << pair.source;
    const int year = std::stoi(iso.substr(0, 4)), month = std::stoi(iso.substr(5, 2));
    const int day = std::stoi(iso.substr(8, 2));
    EXPECT_EQ(iso[4], '-');
    EXPECT_EQ(iso[7], '-');
    EXPECT_EQ(pair.source.size(), 19u) << "one token per character: " << pair.source;
    EXPECT_GE(year, 1950);
    EXPECT_LE(year, 2049);
    const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    const int days[12] = {31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    EXPECT_GE(day, 1);
    EXPECT_LE(day, days[month - 1]) << iso;
    EXPECT_EQ(pair.target,
              std::to_string(day) + " " + months[month - 1] + " " + std::to_string(year));
  }
}

}  // namespace
}  // namespace kiln::data
