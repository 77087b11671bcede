// Data splits and token batches: seeded random splits (disjoint, complete, reproducible), saved in
// split.json and used again by resume and `kiln eval --split`, a changed corpus refused;
// --data-valid/--data-test files; --max-length; --batch-tokens; the flag combinations refused.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "cli_util.h"
#include "models/data/batching.h"
#include "models/data/split.h"
#include "models/data/tasks.h"
#include "models/data/text_file.h"
#include "models/data/tokenizer.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "models/seq2seq/trainer.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

using testing::error_of;
using testing::run_kiln;
using testing::temp_dir;

std::vector<data::SentencePair> numbered_pairs(int n) {
  std::vector<data::SentencePair> pairs;
  for (int i = 0; i < n; ++i) pairs.push_back({"s" + std::to_string(i), "t" + std::to_string(i)});
  return pairs;
}

TEST(Splits, RandomSplitIsDisjointCompleteAndSeeded) {
  const std::vector<data::SentencePair> pairs = numbered_pairs(100);
  data::SplitIndices a = data::random_split(100, 10, 7, 1);
  ASSERT_EQ(a.valid.size(), 10u);
  ASSERT_EQ(a.test.size(), 7u);
  data::Split split = data::apply_split(pairs, a);
  ASSERT_EQ(split.train.size(), 83u);
  std::multiset<std::string> seen;
  for (const auto* part : {&split.train, &split.valid, &split.test}) {
    for (const data::SentencePair& p : *part) seen.insert(p.source);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 100u);  // each pair once
  for (size_t k = 0; k < a.valid.size(); ++k) {
    EXPECT_EQ(split.valid[k].source, "s" + std::to_string(a.valid[k]));  // in drawn order
  }
  for (size_t k = 1; k < split.train.size(); ++k) {  // training keeps corpus order
    EXPECT_LT(std::stoi(split.train[k - 1].source.substr(1)),
              std::stoi(split.train[k].source.substr(1)));
  }
  // Not a consecutive slice: the corpus is ordered by length, the held-out pairs must not be.
  EXPECT_GT(*std::max_element(a.valid.begin(), a.valid.end()) -
                *std::min_element(a.valid.begin(), a.valid.end()),
            50);

  data::SplitIndices again = data::random_split(100, 10, 7, 1);
  EXPECT_EQ(again.valid, a.valid);
  EXPECT_EQ(again.test, a.test);
  data::SplitIndices other = data::random_split(100, 10, 7, 2);
  EXPECT_NE(other.valid, a.valid);
  EXPECT_CONTAINS(error_of([] { data::random_split(10, 6, 5, 1); }),
                  "asked for 6 valid + 5 test = 11 pairs, but there are only 10");
  EXPECT_CONTAINS(error_of([&] {
                    data::apply_split(pairs, {{3, 100}, {}});
                  }),
                  "valid index 100 is outside the corpus's 100 pairs");
  EXPECT_CONTAINS(error_of([&] {
                    data::apply_split(pairs, {{3}, {3}});
                  }),
                  "pair index 3 is listed twice (test)");
}

TEST(Splits, FingerprintSeesEveryChange) {
  std::vector<data::SentencePair> pairs = numbered_pairs(5);
  const std::string base = data::fingerprint(pairs);
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(data::fingerprint(numbered_pairs(5)), base);
  std::vector<data::SentencePair> edited = pairs;
  edited[2].target = "T2";
  EXPECT_NE(data::fingerprint(edited), base);
  std::vector<data::SentencePair> swapped = pairs;
  std::swap(swapped[0], swapped[1]);
  EXPECT_NE(data::fingerprint(swapped), base);
  EXPECT_NE(data::fingerprint(numbered_pairs(4)), base);
  // The tab between the sides counts: moving a word across it is a change.
  EXPECT_NE(data::fingerprint({{"a b", "c"}}), data::fingerprint({{"a", "b c"}}));
}

// Pairs with random lengths 1..max_length on each side.
std::vector<data::EncodedPair> random_encoded(int n, int max_length, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<data::EncodedPair> pairs(static_cast<size_t>(n));
  for (data::EncodedPair& p : pairs) {
    p.source.assign(1 + generator() % max_length, 5);
    p.target.assign(1 + generator() % max_length, 6);
  }
  return pairs;
}

TEST(Splits, TokenBatchesKeepTheBudgetCoverEveryPairOnceAndAreSeeded) {
  std::vector<data::EncodedPair> pairs = random_encoded(300, 20, 7);
  pairs.push_back({{5, 5}, std::vector<int64_t>(60, 6)});  // 61 target tokens > the budget
  data::BatchOptions options;
  options.batch_tokens = 50;
  options.seed = 3;
  std::vector<data::Batch> batches = data::make_batches(pairs, options);
  std::vector<int> count(pairs.size(), 0);
  bool long_alone = false;
  for (const data::Batch& b : batches) {
    const int64_t steps = b.target_out.shape()[0], rows = b.target_out.shape()[1];
    int64_t longest = 0;
    for (int64_t i : b.indices) {
      ++count[static_cast<size_t>(i)];
      longest = std::max<int64_t>(longest, pairs[static_cast<size_t>(i)].target.size() + 1);
    }
    EXPECT_EQ(steps, longest);  // <eos> counted, as the budget counts it
    if (b.indices.size() == 1 && b.indices[0] == 300) {
      long_alone = true;
      continue;
    }
    EXPECT_LE(steps * rows, 50) << rows << " rows of up to " << steps << " target tokens";
  }
  EXPECT_TRUE(long_alone) << "the pair over the budget gets a batch of its own";
  for (size_t i = 0; i < count.size(); ++i) EXPECT_EQ(count[i], 1) << "pair " << i;
  // Full batches: the greedy cut leaves little room, so there are not many more than needed.
  int64_t tokens = 0;
  for (const data::EncodedPair& p : pairs) tokens += static_cast<int64_t>(p.target.size()) + 1;
  EXPECT_LT(static_cast<int64_t>(batches.size()), 2 * tokens / 50 + 2);

  std::vector<std::vector<int64_t>> plan = data::plan_batches(pairs, options);
  ASSERT_EQ(plan.size(), batches.size());
  for (size_t k = 0; k < plan.size(); ++k) EXPECT_EQ(plan[k], batches[k].indices);
  EXPECT_EQ(data::plan_batches(pairs, options), plan);  // reproducible
  data::BatchOptions reseeded = options;
  reseeded.seed = 4;
  std::vector<std::vector<int64_t>> other = data::plan_batches(pairs, reseeded);
  EXPECT_EQ(other.size(), plan.size());  // the same batches, in another order
  EXPECT_NE(other, plan);
  std::sort(other.begin(), other.end());
  std::vector<std::vector<int64_t>> sorted = plan;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(other, sorted);

  // With num_steps every target is num_steps long: 50 / 8 = 6 rows a batch, but for one.
  options.num_steps = 8;
  int64_t not_six = 0;
  for (const data::Batch& b : data::make_batches(pairs, options)) {
    EXPECT_EQ(b.target_out.shape()[0], 8);
    EXPECT_LE(b.target_out.shape()[1], 6);
    not_six += b.target_out.shape()[1] != 6;
  }
  EXPECT_EQ(not_six, 301 % 6 == 0 ? 0 : 1);
  options.drop_last = true;
  EXPECT_CONTAINS(error_of([&] { data::plan_batches(pairs, options); }),
                  "drop_last has no remainder batch to drop with batch_tokens");
}

// The cosine schedule's length is the real number of token batches: half-way through it the rate
// is exactly half (batch_size's count, ceil(pairs / 32), would be about twice too many steps).
TEST(Splits, TokenBatchesSetTheScheduleLength) {
  fs::path dir = temp_dir("splits_schedule");
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.task_size = 300;
  o.batch_size = 32;
  o.batch_tokens = 600;
  o.schedule = "cosine";
  o.lr = 0.01;
  o.epochs = 2;
  o.model.embed_size = 8;
  o.model.hidden_size = 8;
  o.model.num_layers = 1;
  o.bleu_sentences = 0;
  o.quiet = true;
  std::vector<seq2seq::EpochMetrics> history = seq2seq::train(o, dir.string());
  ASSERT_EQ(history.size(), 2u);
  EXPECT_LT(history[0].steps, (285 + 31) / 32);
  EXPECT_EQ(history[1].steps, 2 * history[0].steps);
  EXPECT_NEAR(history[0].lr, 0.005, 1e-12);
  EXPECT_EQ(history[1].lr, 0.0);
  fs::remove_all(dir);
}

TEST(Splits, MaxLengthDropsTheLongPairsAndCountsThem) {
  data::TokenizedPairs tokens;
  std::vector<data::SentencePair> pairs;
  int64_t expected = 0;
  for (int i = 0; i < 40; ++i) {
    const int source = 1 + i % 7, target = 1 + i % 5;
    tokens.source.emplace_back(source, "s");
    tokens.target.emplace_back(target, "t");
    pairs.push_back({std::to_string(i), std::to_string(i)});
    if (source > 4 || target > 4) ++expected;
  }
  const int64_t dropped = seq2seq::drop_long_pairs(tokens, pairs, 4);
  EXPECT_EQ(dropped, expected);
  ASSERT_EQ(pairs.size(), 40u - expected);
  ASSERT_EQ(tokens.source.size(), pairs.size());
  for (size_t k = 0; k < pairs.size(); ++k) {
    const int i = std::stoi(pairs[k].source);  // still aligned with its tokens
    EXPECT_EQ(tokens.source[k].size(), static_cast<size_t>(1 + i % 7));
    EXPECT_EQ(tokens.target[k].size(), static_cast<size_t>(1 + i % 5));
    EXPECT_LE(tokens.source[k].size(), 4u);
    EXPECT_LE(tokens.target[k].size(), 4u);
  }
}

// A TSV corpus ordered by length as d2l's is: pair i has 1 + i / 20 words a side.
fs::path write_corpus(const fs::path& dir, int n) {
  fs::create_directories(dir);
  fs::path file = dir / "corpus.tsv";
  std::ofstream out(file);
  for (int i = 0; i < n; ++i) {
    std::string source, target;
    for (int w = 0; w <= i / 20; ++w) {
      source += "w" + std::to_string((i + w) % 13) + " ";
      target += "m" + std::to_string((i * 3 + w) % 11) + " ";
    }
    out << source << "\t" << target << "\n";
  }
  return file;
}

seq2seq::TrainOptions small_run(const fs::path& corpus) {
  seq2seq::TrainOptions o;
  o.data = corpus.string();
  o.split_valid = 20;
  o.split_test = 15;
  o.split_seed = 5;
  o.epochs = 1;
  o.batch_size = 32;
  o.model.embed_size = 8;
  o.model.hidden_size = 8;
  o.model.num_layers = 1;
  o.bleu_sentences = 5;
  o.quiet = true;
  return o;
}

std::vector<std::string> sources(const std::vector<data::SentencePair>& pairs) {
  std::vector<std::string> out;
  for (const data::SentencePair& p : pairs) out.push_back(p.source);
  return out;
}

TEST(Splits, TheSavedSplitIsWhatResumeAndEvalUse) {
  fs::path dir = temp_dir("splits_saved");
  fs::path corpus = write_corpus(dir, 200);
  seq2seq::TrainOptions o = small_run(corpus);
  const fs::path run = dir / "run";
  seq2seq::train(o, run.string());
  const std::string split_file = (run / "last" / "split.json").string();
  ASSERT_TRUE(fs::exists(split_file));
  seq2seq::SplitRecord saved =
      seq2seq::parse_split_record(data::read_text_file("test", split_file), split_file);
  EXPECT_EQ(saved.pairs, 200);
  EXPECT_EQ(saved.seed, 5u);
  EXPECT_EQ(saved.corpus, corpus.string());
  EXPECT_EQ(saved.bytes, static_cast<int64_t>(fs::file_size(corpus)));
  EXPECT_EQ(saved.indices.valid, data::random_split(200, 20, 15, 5).valid);

  data::Split drawn = seq2seq::load_data(o, nullptr);
  data::Split reread = seq2seq::load_data(o, nullptr, "eval", (run / "last").string());
  EXPECT_EQ(sources(reread.valid), sources(drawn.valid));
  EXPECT_EQ(sources(reread.test), sources(drawn.test));

  // The file is what counts, not the seed: a split.json with other (valid) indices is obeyed, by
  // eval and by resume, which saves it again.
  std::string text = data::read_text_file("test", split_file);
  const std::string first = "\"valid\":[" + std::to_string(saved.indices.valid[0]) + ",";
  int64_t unused = 0;
  while (std::count(saved.indices.valid.begin(), saved.indices.valid.end(), unused) ||
         std::count(saved.indices.test.begin(), saved.indices.test.end(), unused)) {
    ++unused;
  }
  ASSERT_NE(text.find(first), std::string::npos) << text.substr(0, 200);
  text.replace(text.find(first), first.size(), "\"valid\":[" + std::to_string(unused) + ",");
  std::ofstream(split_file) << text;
  data::Split edited = seq2seq::load_data(o, nullptr, "eval", (run / "last").string());
  EXPECT_EQ(edited.valid[0].source, data::read_tsv(corpus.string()).pairs[unused].source);
  seq2seq::TrainOptions more = o;
  more.epochs = 2;
  std::vector<std::string> lines;
  seq2seq::train(more, run.string(), (run / "last").string(),
                 [&](const std::string& line) { lines.push_back(line); });
  seq2seq::SplitRecord resaved =
      seq2seq::parse_split_record(data::read_text_file("test", split_file), split_file);
  EXPECT_EQ(resaved.indices.valid[0], unused);
  EXPECT_EQ(resaved.indices.test, saved.indices.test);
  EXPECT_CONTAINS(lines.at(0), "data: 165 train / 20 valid / 15 test pairs, random split (seed 5)");
  fs::remove_all(dir);
}

TEST(Splits, CliEvalOnTheRunsOwnSplitAndAChangedCorpusIsRefused) {
  fs::path dir = temp_dir("splits_cli");
  fs::path corpus = write_corpus(dir, 200);
  const std::string run = (dir / "run").string(), log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln("train --data " + corpus.string() +
                         " --split-valid 20 --split-test 15 --max-length 8 --batch-tokens 60"
                         " --epochs 1 --hidden 8 --embed 8 --layers 1 --quiet --out " +
                         run,
                     log),
            0)
      << data::read_text_file("test", log);
  // Pairs 160..199 have 9 or 10 words a side: those in training are dropped, not the held-out.
  data::Split split =
      data::apply_split(data::read_tsv(corpus.string()).pairs, data::random_split(200, 20, 15, 1));
  int64_t long_train = 0;
  for (const data::SentencePair& p : split.train)
    long_train += data::tokenize_d2l(p.source).size() > 8;
  EXPECT_GT(long_train, 0);
  EXPECT_CONTAINS(data::read_text_file("test", log),
                  "data: " + std::to_string(165 - long_train) + " train (" +
                      std::to_string(long_train) +
                      " dropped by --max-length 8) / 20 valid / 15 test pairs, random split");

  ASSERT_EQ(run_kiln("eval --checkpoint " + run + "/best --split test", log), 0)
      << data::read_text_file("test", log);
  EXPECT_CONTAINS(data::read_text_file("test", log), "pairs 15\n");
  ASSERT_EQ(run_kiln("eval --checkpoint " + run + "/last --split valid", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "pairs 20\n");
  EXPECT_NE(
      run_kiln("eval --checkpoint " + run + "/last --split test --data " + corpus.string(), log),
      0);
  EXPECT_CONTAINS(data::read_text_file("test", log),
                  "eval: --split test takes the run's own corpus from its config.json");

  std::string text = data::read_text_file("test", corpus.string());
  text[text.find("m0")] = 'M';  // one character of one pair
  std::ofstream(corpus) << text;
  EXPECT_NE(run_kiln("eval --checkpoint " + run + "/last --split test", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log),
                  "eval: " + corpus.string() +
                      " is not the corpus the run's split was drawn from (" + run +
                      "/last/split.json: 200 pairs");
  EXPECT_NE(run_kiln("train --resume " + run + "/last --epochs 2 --out " + run, log), 0);
  EXPECT_CONTAINS(
      data::read_text_file("test", log),
      "train: " + corpus.string() + " is not the corpus the run's split was drawn from");
  fs::remove(run + "/last/split.json");
  EXPECT_NE(run_kiln("eval --checkpoint " + run + "/last --split test", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "split.json is missing");
  fs::remove_all(dir);
}

TEST(Splits, ValidAndTestFilesInsteadOfASplit) {
  fs::path dir = temp_dir("splits_files");
  fs::path corpus = write_corpus(dir, 60);
  std::ofstream(dir / "valid.tsv") << "w1 w2\tm1 m2\nno tab here\nw3\tm3\n";
  std::ofstream(dir / "test.tsv") << "w4\tm4\n";
  seq2seq::TrainOptions o = small_run(corpus);
  o.split_valid = -1;
  o.split_test = 0;
  o.data_valid = (dir / "valid.tsv").string();
  o.data_test = (dir / "test.tsv").string();
  o.validate();
  std::vector<std::string> lines;
  data::Split split =
      seq2seq::load_data(o, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(split.train.size(), 60u);  // the corpus all trains
  ASSERT_EQ(split.valid.size(), 2u);
  EXPECT_EQ(split.valid[1].source, "w3");
  ASSERT_EQ(split.test.size(), 1u);
  ASSERT_EQ(lines.size(), 1u);  // the bad line, as the training corpus's are
  EXPECT_CONTAINS(lines[0], "skipped 1 bad line(s); first: " + o.data_valid +
                                ":2: no tab between source and target");
  o.strict_data = true;
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_data(o, nullptr); }),
                  o.data_valid + ":2: no tab between source and target");
  o.strict_data = false;
  std::ofstream(dir / "empty.tsv") << "\n";
  o.data_test = (dir / "empty.tsv").string();
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_data(o, nullptr); }),
                  o.data_test + " has no usable sentence pairs");
  fs::remove_all(dir);
}

TEST(Splits, BadCombinationsAndOldConfigs) {
  const fs::path dir = temp_dir("splits_flags");
  const std::string log = (dir / "log.txt").string();
  const auto refused = [&](const std::string& args) {
    EXPECT_NE(run_kiln("train --task reverse --epochs 0 " + args, log), 0) << args;
    return data::read_text_file("test", log);
  };
  const std::string random_vs_slices =
      "--split-valid/--split-test/--split-seed (a seeded random split) cannot be combined with "
      "--train-pairs/--valid-pairs/--test-pairs";
  EXPECT_CONTAINS(refused("--split-valid 10 --valid-pairs 10"), random_vs_slices);
  EXPECT_CONTAINS(refused("--split-seed 3 --train-pairs 100"), random_vs_slices);
  EXPECT_CONTAINS(refused("--preset d2l --split-test 10"), random_vs_slices);
  EXPECT_CONTAINS(refused("--split-test 5 --data-test x.tsv"), "or --data-valid/--data-test");
  EXPECT_CONTAINS(refused("--data-valid x.tsv --valid-pairs 10"),
                  "--data-valid/--data-test (separate files, the corpus all trains) cannot be "
                  "combined with");
  EXPECT_CONTAINS(refused("--batch-tokens 0"), "--batch-tokens: must be > 0, got '0'");
  EXPECT_CONTAINS(refused("--max-length 0"), "--max-length: must be > 0, got '0'");
  EXPECT_CONTAINS(refused("--split-valid -2"), "--split-valid: must be >= 0, got '-2'");
  EXPECT_NE(run_kiln("eval --checkpoint nowhere", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log),
                  "eval: give --data, --data-src/--data-tgt or --task, or --split valid|test");

  seq2seq::TrainOptions o;  // from TrainOptions itself, as a --config file reaches it
  o.task = "reverse";
  o.split_test = 3;
  o.test_pairs = 3;
  EXPECT_CONTAINS(error_of([&] { o.validate(); }), "train: --split-valid/--split-test");
  // A config.json from before random splits keeps its consecutive slices; asking for a random
  // split's sizes asks for a random split.
  EXPECT_FALSE(seq2seq::TrainOptions::from_json("{}", "old.json").random_split);
  EXPECT_TRUE(seq2seq::TrainOptions::from_json(R"({"split_test": 4})", "c.json").random_split);
  EXPECT_TRUE(
      seq2seq::TrainOptions::from_json(R"({"random_split": true})", "new.json").random_split);
  seq2seq::TrainOptions old = seq2seq::TrainOptions::from_json(R"({"task": "reverse"})", "o.json");
  old.task_size = 100;
  data::Split split = seq2seq::load_data(old, nullptr);
  ASSERT_EQ(split.valid.size(), 5u);  // the last 5%, as before
  EXPECT_EQ(split.valid.back().source, data::generate_task("reverse", 100, 1).back().source);
  fs::remove_all(dir);
}

TEST(Splits, ACorruptSplitJsonIsAMessage) {
  const std::string head = R"({"corpus": "c.tsv", "bytes": 10, "pairs": 5, "fingerprint": "ab", )"
                           R"("seed": 1, )";
  seq2seq::SplitRecord ok =
      seq2seq::parse_split_record(head + R"("valid": [4, 0], "test": []})", "s.json");
  EXPECT_EQ(ok.indices.valid, (std::vector<int64_t>{4, 0}));
  EXPECT_CONTAINS(error_of([&] {
                    seq2seq::parse_split_record(head + R"("valid": [1, 5], "test": []})", "s.json");
                  }),
                  "s.json: field 'valid' item 2: expected an integer in [0, 4], got 5");
  EXPECT_CONTAINS(error_of([&] {
                    seq2seq::parse_split_record(head + R"("valid": [1], "test": 3})", "s.json");
                  }),
                  "s.json: field 'test': expected an array of integers, got 3");
  EXPECT_CONTAINS(error_of([&] {
                    seq2seq::parse_split_record(head + R"("valid": [1.5], "test": []})", "s.json");
                  }),
                  "item 1: expected an integer in [0, 4], got 1.5");
  EXPECT_CONTAINS(
      error_of([&] { seq2seq::parse_split_record(head + R"("valid": []})", "s.json"); }),
      "s.json: missing field 'test'");
}

}  // namespace
}  // namespace kiln
