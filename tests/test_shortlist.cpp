// The vocabulary shortlist's lexical table (models/seq2seq/shortlist.h): learned on pairs whose
// translations are known, its file, the decoding candidates, the checkpoint round trip and
// `kiln shortlist`, and the errors of --shortlist. The decoding itself is checked in
// test_decode_fast.cpp.
#include <filesystem>

#include "cli_util.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/shortlist.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

using seq2seq::LexicalTable;
using testing::read_file;
using testing::run_kiln;
using testing::temp_dir;

// Source words 4..4+n-1, each translated by one target word (a permutation, so no two share it),
// in reversed order, with a target word 4 + n (an article) in every sentence; <eos> ends both.
std::vector<data::EncodedPair> permuted_pairs(int64_t n, int64_t count) {
  manual_seed(3);
  std::vector<double> u = uniform({count * 6}, 0, 1, DType::f64).to_vector<double>();
  std::vector<data::EncodedPair> pairs;
  for (int64_t i = 0; i < count; ++i) {
    data::EncodedPair p;
    const int64_t length = 1 + static_cast<int64_t>(u[i * 6] * 5);
    for (int64_t j = 0; j < length; ++j) {
      p.source.push_back(4 + static_cast<int64_t>(u[i * 6 + 1 + j] * n));
    }
    p.target.push_back(4 + n);
    for (auto s = p.source.rbegin(); s != p.source.rend(); ++s) {
      p.target.push_back(4 + (*s - 4) * 7 % n);
    }
    p.source.push_back(data::Vocab::eos_id);
    p.target.push_back(data::Vocab::eos_id);
    pairs.push_back(p);
  }
  return pairs;
}

TEST(Shortlist, Model1PutsTheTrueTranslationFirst) {
  const int64_t n = 20;  // 7 and 20 are coprime: a permutation
  LexicalTable table = LexicalTable::learn(permuted_pairs(n, 400), 4 + n, 5 + n);
  ASSERT_EQ(table.targets.size(), static_cast<size_t>(4 + n));
  for (int64_t s = 4; s < 4 + n; ++s) {
    ASSERT_FALSE(table.targets[s].empty()) << "source " << s;
    EXPECT_EQ(table.targets[s][0], 4 + (s - 4) * 7 % n) << "source " << s;
  }
  // The article goes to NULL rather than to every word; <eos> is never in the table.
  for (const auto& row : table.targets) {
    for (int64_t t : row) EXPECT_NE(t, data::Vocab::eos_id);
  }
  // A source word never seen has no targets.
  EXPECT_TRUE(table.targets[data::Vocab::pad_id].empty());
  // top and min_prob cut the lists.
  seq2seq::LexicalOptions one;
  one.top = 1;
  for (const auto& row : LexicalTable::learn(permuted_pairs(n, 400), 4 + n, 5 + n, one).targets) {
    EXPECT_LE(row.size(), 1u);
  }
  EXPECT_THROW(LexicalTable::learn({{{4, 99}, {4}}}, 10, 10), Error);  // id past the vocabulary
  // The memory bound: with room for the links of the first 3 pairs only, the table is the one
  // those 3 pairs give (most source words unseen), not the whole corpus's.
  std::vector<data::EncodedPair> pairs = permuted_pairs(n, 400);
  seq2seq::LexicalOptions bounded;
  bounded.max_links = 0;
  auto words = [](const std::vector<int64_t>& ids) {  // <pad>, <bos>, <eos> (and <unk>) aside
    return static_cast<int64_t>(
        std::count_if(ids.begin(), ids.end(), [](int64_t id) { return id >= 4; }));
  };
  for (size_t i = 0; i < 3; ++i) {
    bounded.max_links += (words(pairs[i].source) + 1) * words(pairs[i].target);  // + NULL
  }
  LexicalTable prefix = LexicalTable::learn({pairs.begin(), pairs.begin() + 3}, 4 + n, 5 + n);
  EXPECT_EQ(LexicalTable::learn(pairs, 4 + n, 5 + n, bounded).targets, prefix.targets);
  EXPECT_NE(prefix.targets, table.targets);
}

TEST(Shortlist, CandidatesAreTheReservedTheFrequentAndTheBatchsTranslations) {
  LexicalTable table;
  table.source_vocab = 8;
  table.target_vocab = 30;
  table.targets = {{}, {}, {}, {}, {20, 25}, {9}, {29, 5}, {}};
  std::vector<int64_t> expected = {0, 1, 2, 3, 4, 5, 20, 25, 29};
  EXPECT_EQ(table.candidates({{4}, {6, 3}}, 2), expected);
  EXPECT_EQ(table.candidates({}, 100).size(), 30u);  // K past the vocabulary: every id
}

TEST(Shortlist, FileRoundTripAndBadFiles) {
  LexicalTable table = LexicalTable::learn(permuted_pairs(20, 200), 24, 25);
  LexicalTable back = LexicalTable::parse(table.to_text(), "t.txt");
  EXPECT_EQ(back.source_vocab, 24);
  EXPECT_EQ(back.target_vocab, 25);
  EXPECT_EQ(back.targets, table.targets);
  const auto error_of = [](const std::string& text) {
    return testing::error_of([&] { LexicalTable::parse(text, "t.txt"); });
  };
  EXPECT_CONTAINS(error_of(""), "t.txt: empty file");
  EXPECT_CONTAINS(error_of("kiln-lexical-shortlist 2 1 5\n\n"), "t.txt:1: expected the header");
  EXPECT_CONTAINS(error_of("kiln-lexical-shortlist 1 2 5\n4 1\n"),
                  "1 source lines, the header says 2");
  EXPECT_CONTAINS(error_of("kiln-lexical-shortlist 1 2 5\n4 1\n3 5\n"),
                  "t.txt:3: '5' is not a target id in [0, 5)");
  EXPECT_CONTAINS(error_of("kiln-lexical-shortlist 1 1 5\nx\n"), "t.txt:2: 'x'");
}

// A trained checkpoint holds the table of its training pairs; without it Translator::load still
// works and --shortlist says how to build it; `kiln shortlist` builds the same table again.
TEST(Shortlist, CheckpointRoundTripAndKilnShortlist) {
  const auto dir = temp_dir("shortlist_checkpoint");
  seq2seq::TrainOptions o = testing::tiny_reverse_options();
  o.epochs = 1;
  seq2seq::train(o, (dir / "run").string());
  const std::string best = (dir / "run" / "last").string();
  const std::string file = best + "/" + LexicalTable::file_name;
  const std::string saved = read_file(file);
  ASSERT_FALSE(saved.empty());
  seq2seq::Translator t = seq2seq::Translator::load(best);
  EXPECT_EQ(t.lexical.source_vocab, t.source_vocab.size());
  EXPECT_EQ(t.lexical.targets, LexicalTable::parse(saved, file).targets);
  const std::vector<std::string> sentences = {"a b c", "d e f g h", "c a t"};
  seq2seq::TranslateOptions full, all_ids;
  all_ids.shortlist = t.target_vocab.size();  // every id: the same outputs
  for (int64_t beam : {1, 3}) {
    full.beam_size = all_ids.beam_size = beam;
    auto a = t.translate(sentences, full), b = t.translate(sentences, all_ids);
    for (size_t i = 0; i < sentences.size(); ++i) {
      EXPECT_EQ(a[i][0].tokens, b[i][0].tokens) << "beam " << beam << " sentence " << i;
      EXPECT_EQ(a[i][0].score, b[i][0].score) << "beam " << beam << " sentence " << i;
    }
  }

  std::filesystem::remove(file);
  seq2seq::Translator old = seq2seq::Translator::load(best);  // a checkpoint from before
  EXPECT_TRUE(old.lexical.empty());
  EXPECT_EQ(old.translate(sentences).size(), sentences.size());
  seq2seq::TranslateOptions shortlist;
  shortlist.shortlist = 10;
  const std::string missing = testing::error_of([&] { old.translate(sentences, shortlist); });
  EXPECT_CONTAINS(missing, best + " has no lexical table");
  EXPECT_CONTAINS(missing, "kiln shortlist --checkpoint " + best);
  const std::string out = (dir / "out.txt").string();
  EXPECT_EQ(run_kiln("translate --checkpoint " + best + " --shortlist 10 < /dev/null", out), 1);
  EXPECT_CONTAINS(read_file(out), "has no lexical table");
  EXPECT_EQ(run_kiln("shortlist --checkpoint " + best, out), 0) << read_file(out);
  EXPECT_EQ(read_file(file), saved);  // the same pairs, the same table
  // kiln average carries the first checkpoint's table.
  const std::string averaged = (dir / "avg").string();
  EXPECT_EQ(run_kiln("average --checkpoints " + best + " " + (dir / "run" / "best").string() +
                         " --out " + averaged,
                     out),
            0)
      << read_file(out);
  EXPECT_EQ(read_file(averaged + "/" + LexicalTable::file_name), saved);
  EXPECT_NE(run_kiln("translate --checkpoint " + best + " --shortlist 0 < /dev/null", out), 0);
  EXPECT_CONTAINS(read_file(out), "--shortlist: must be > 0, got '0'");
  EXPECT_EQ(
      run_kiln("eval --checkpoint " + best + " --task reverse --task-size 20 --shortlist 5", out),
      0)
      << read_file(out);
  EXPECT_CONTAINS(read_file(out), "BLEU");

  // A table made for other vocabularies is refused, naming the file.
  LexicalTable wrong;
  wrong.source_vocab = 5;
  wrong.target_vocab = 5;
  wrong.targets.resize(5);
  wrong.save(best);
  EXPECT_CONTAINS(testing::error_of([&] { seq2seq::Translator::load(best); }),
                  file + ": made for vocabularies of 5 and 5");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln
