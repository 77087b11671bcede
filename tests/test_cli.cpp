// The translator end to end on a tiny generated corpus: train, checkpoint, translate, evaluate,
// and resume with exactly the losses of an uninterrupted run. Also the kiln binary's error paths.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli_util.h"
#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "models/seq2seq/report.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

using testing::run_kiln;
using testing::temp_dir;
using testing::tiny_reverse_options;

TEST(Cli, TrainCheckpointTranslateAndResumeExactly) {
  fs::path full = temp_dir("cli_full"), split = temp_dir("cli_split");
  std::vector<seq2seq::EpochMetrics> uninterrupted =
      seq2seq::train(tiny_reverse_options(), full.string());
  ASSERT_EQ(uninterrupted.size(), 3u);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "config.json",
                           "source_vocab.txt", "target_vocab.txt", "state.json"}) {
    EXPECT_TRUE(fs::exists(full / "last" / file)) << file;
  }
  EXPECT_TRUE(fs::exists(full / "best" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(full / "metrics.jsonl"));
  EXPECT_TRUE(fs::exists(full / "loss.svg"));
  EXPECT_TRUE(safetensors::load((full / "last" / "model.safetensors").string())
                  .tensors.count("decoder.dense.weight"));

  seq2seq::TrainOptions first = tiny_reverse_options();
  first.epochs = 1;
  seq2seq::train(first, split.string());
  seq2seq::TrainOptions rest = tiny_reverse_options();
  std::vector<seq2seq::EpochMetrics> resumed =
      seq2seq::train(rest, split.string(), (split / "last").string());
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].epoch, 2);
  EXPECT_EQ(resumed[0].train_loss, uninterrupted[1].train_loss);  // bit for bit on the CPU
  EXPECT_EQ(resumed[1].train_loss, uninterrupted[2].train_loss);
  EXPECT_EQ(resumed[1].valid_loss, uninterrupted[2].valid_loss);

  seq2seq::Translator t = seq2seq::Translator::load((full / "last").string());
  auto greedy = t.translate({"a b c", "d e f g"});
  auto beams = t.translate({"a b c", "d e f g"}, 3, 2);
  ASSERT_EQ(greedy.size(), 2u);
  ASSERT_EQ(beams[0].size(), 2u);
  EXPECT_GE(beams[0][0].score, beams[0][1].score);
  EXPECT_FALSE(greedy[0][0].tokens.empty());  // at least its <eos>
  EXPECT_GT(t.mean_nll({{"a b", "b a"}}), 0.0);
  fs::remove_all(full);
  fs::remove_all(split);
}

TEST(Cli, SentencePieceSubwordsEndToEnd) {
  fs::path out = temp_dir("cli_spm");
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.task = "numbers-fr";
  o.epochs = 1;
  o.tokenizer = "sentencepiece";
  o.subword_vocab = 40;
  seq2seq::train(o, out.string());
  EXPECT_TRUE(fs::exists(out / "last" / "source.spm.model"));
  EXPECT_TRUE(fs::exists(out / "last" / "target.spm.model"));
  seq2seq::Translator t = seq2seq::Translator::load((out / "last").string());
  // The subword tokenizer round-trips d2l-normalized text, and its pieces are what the vocab holds.
  // (The case is kept now, and the task's targets are lowercase: a lowercase input.)
  std::vector<std::string> pieces = t.target_tokenizer->tokenize("quatre-vingt-dix-sept");
  EXPECT_GT(pieces.size(), 1u);
  EXPECT_EQ(t.target_tokenizer->detokenize(pieces), "quatre-vingt-dix-sept");
  for (const std::string& piece : pieces)
    EXPECT_NE(t.target_vocab.id(piece), data::Vocab::unk_id) << piece;
  EXPECT_EQ(t.translate({"1 2 3"}).size(), 1u);
  fs::remove_all(out);
}

TEST(Cli, BadDataIsNamed) {
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.task.clear();
  o.data = "/nonexistent/fra.txt";
  try {
    seq2seq::train(o, temp_dir("cli_bad").string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/fra.txt"), std::string::npos) << e.what();
  }
  o.data.clear();
  EXPECT_THROW(o.validate(), Error);  // no data source at all
  o.task = "reverse";
  o.optimizer = "adagrad";
  try {
    o.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer 'adagrad' is not one of"), std::string::npos)
        << e.what();
  }
}

TEST(Cli, FailedRunLeavesTheOldCheckpoint) {
  fs::path out = temp_dir("cli_keep");
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.epochs = 1;
  seq2seq::train(o, out.string());
  std::string before = data::read_text_file("test", (out / "last" / "model.safetensors").string());
  o.task.clear();
  o.data = (out / "missing.tsv").string();  // fails before its first save
  // --overwrite: a fresh run refuses a non-empty folder before reading any data.
  EXPECT_THROW(seq2seq::train(o, out.string(), "", nullptr, /*overwrite=*/true), Error);
  EXPECT_EQ(data::read_text_file("test", (out / "last" / "model.safetensors").string()), before);
  fs::remove_all(out);
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// The kiln binary itself: exit codes and what it prints.

// KILN_CPU_GEMM (kernels/gemm.h) is read before a run writes anything: a bad value stops it with
// the variable named, and OpenBLAS alone trains as well.
TEST(CliBinary, CpuGemmVariableIsCheckedBeforeTheRunStarts) {
  fs::path dir = temp_dir("cli_cpu_gemm"), log = dir / "log.txt";
  fs::create_directories(dir);
  ::setenv("KILN_CPU_GEMM", "mkl", 1);
  EXPECT_EQ(run_kiln("train --task reverse --task-size 40 --epochs 1 --out " +
                         (dir / "run").string(), log.string()),
            1);
  EXPECT_CONTAINS(data::read_text_file("test", log.string()),
                  "KILN_CPU_GEMM='mkl': expected auto (libxsmm, OpenBLAS and oneDNN by size");
  EXPECT_FALSE(fs::exists(dir / "run"));
  ::setenv("KILN_CPU_GEMM", "openblas", 1);
  EXPECT_EQ(run_kiln("train --task reverse --task-size 40 --epochs 1 --quiet --out " +
                         (dir / "run").string(), log.string()),
            0)
      << data::read_text_file("test", log.string());
  EXPECT_TRUE(fs::exists(dir / "run" / "last" / "model.safetensors"));
  ::unsetenv("KILN_CPU_GEMM");
  fs::remove_all(dir);
}

TEST(CliBinary, TrainTranslateAndErrors) {
  fs::path dir = temp_dir("cli_binary");
  std::string log = (dir / "log.txt").string(), out = (dir / "run").string();
  ASSERT_EQ(run_kiln("train --task reverse --task-size 200 --epochs 1 --hidden 16 --embed 8 "
                     "--layers 1 --quiet --out " +
                         out,
                     log),
            0)
      << data::read_text_file("test", log);
  EXPECT_CONTAINS(data::read_text_file("test", log), "epoch 1: train loss");
  std::ofstream(dir / "in.txt") << "a b c\nd e\n";
  ASSERT_EQ(run_kiln("translate --checkpoint " + out + "/last --beam 2 --n-best 2 < " +
                         (dir / "in.txt").string(),
                     log),
            0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "1\t");  // n-best lines: rank, score, text
  EXPECT_NE(run_kiln("train --task reverse --lr -1", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--lr: must be > 0, got '-1'");
  EXPECT_NE(run_kiln("train --task nosuchtask", log), 0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "--task");
  EXPECT_NE(run_kiln("translate --checkpoint " + (dir / "missing").string() + " < /dev/null", log),
            0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "missing/config.json");
  EXPECT_NE(
      run_kiln("train --data " + (dir / "nofile.tsv").string() + " --overwrite --out " + out, log),
      0);
  EXPECT_CONTAINS(data::read_text_file("test", log), "nofile.tsv");
  EXPECT_TRUE(fs::exists(fs::path(out) / "last" / "model.safetensors"));  // the failed run kept it
  EXPECT_EQ(run_kiln("--help", log), 0);
  fs::remove_all(dir);
}

// --preset d2l-classic on a small file in fra.txt's format (English, French, attribution): the
// preset's settings apply, flags still override them, and d2l's four sentences are translated.
TEST(CliBinary, D2lPresetOnATatoebaFile) {
  fs::path dir = temp_dir("cli_preset");
  {
    std::ofstream tsv(dir / "fra.txt");
    const char* pairs[][2] = {{"Go.", "Va !"},
                              {"I lost.", "J'ai perdu."},
                              {"He's calm.", "Il est calme."},
                              {"I'm home.", "Je suis chez moi."},
                              {"Hi.", "Salut !"},
                              {"Run!", "Cours !"}};
    for (int i = 0; i < 700; ++i) {
      tsv << pairs[i % 6][0] << "\t" << pairs[i % 6][1]
          << "\tCC-BY 2.0 (France) Attribution: tatoeba.org #" << i << "\n";
    }
    tsv << "a line without a tab\n";
  }
  std::string log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln("train --data " + (dir / "fra.txt").string() +
                         " --preset d2l-classic --epochs 3 --quiet --out " + (dir / "run").string(),
                     log),
            0)
      << data::read_text_file("test", log);
  std::string text = data::read_text_file("test", log);
  EXPECT_CONTAINS(text, "skipped 1 bad line(s); first: ");
  EXPECT_CONTAINS(text, "fra.txt:701: ");
  EXPECT_CONTAINS(text, "600 train / 0 valid");
  EXPECT_CONTAINS(text, "gru 2x32, embed 32");
  EXPECT_CONTAINS(text, "epoch 3:");
  EXPECT_CONTAINS(text, "he's calm . => ");
  EXPECT_CONTAINS(text, ", bleu ");
  fs::remove_all(dir);
}

// Real text: a model trained on fra.txt-like lines (case kept, the default) translates to cased
// French with the punctuation spaced as in its training targets (U+202F before ! and ?, nothing
// before .), and eval scores it sacreBLEU-style against the raw references. --lowercase (the d2l
// presets') lowercases everything and says so in config.json.
TEST(CliBinary, TranslatePrintsDetokenizedCasedText) {
  fs::path dir = temp_dir("cli_real_text");
  {
    std::ofstream tsv(dir / "fra.txt");
    const char* pairs[][2] = {{"Go.", "Va\u202f!"},
                              {"I lost.", "J'ai perdu."},
                              {"Who is Tom?", "Qui est Tom\u202f?"},
                              {"I'm at home.", "Je suis chez moi."}};
    for (int i = 0; i < 200; ++i) tsv << pairs[i % 4][0] << "\t" << pairs[i % 4][1] << "\tCC-BY\n";
  }
  const std::string data = (dir / "fra.txt").string(), log = (dir / "log.txt").string();
  const std::string out = (dir / "run").string();
  ASSERT_EQ(run_kiln("train --data " + data +
                         " --attention bahdanau --hidden 32 --embed 16 --layers 1 --epochs 10 "
                         "--lr 0.02 --valid-pairs 8 --quiet --out " +
                         out,
                     log),
            0)
      << data::read_text_file("test", log);
  std::ofstream(dir / "in.txt") << "Go.\nWho is Tom?\nI lost.\n";
  ASSERT_EQ(run_kiln("translate --checkpoint " + out + "/best < " + (dir / "in.txt").string(), log),
            0);
  EXPECT_EQ(data::read_text_file("test", log), "Va\u202f!\nQui est Tom\u202f?\nJ'ai perdu.\n");
  ASSERT_EQ(run_kiln("eval --checkpoint " + out + "/best --data " + data, log), 0);
  const std::string scores = data::read_text_file("test", log);
  EXPECT_CONTAINS(scores,
                  "BLEU 100.00 (sacreBLEU nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp; "
                  "detokenized output vs raw references)\n");
  EXPECT_CONTAINS(scores, "chrF2 100.00 (sacreBLEU nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no)");
  EXPECT_CONTAINS(scores, "exact match 100.00%");
  const std::string config = data::read_text_file("test", out + "/best/config.json");
  EXPECT_CONTAINS(config, "\"lowercase\": false");
  EXPECT_CONTAINS(config, "\"!\": \"\u202f\"");

  const std::string lower = (dir / "lower").string();
  ASSERT_EQ(run_kiln("train --data " + data +
                         " --lowercase --epochs 1 --hidden 8 --embed 8 "
                         "--layers 1 --quiet --out " +
                         lower,
                     log),
            0)
      << data::read_text_file("test", log);
  seq2seq::Translator t = seq2seq::Translator::load(lower + "/last");
  EXPECT_TRUE(t.options.lowercase);
  EXPECT_EQ(t.source_tokenizer->tokenize("Who is Tom?"),
            (std::vector<std::string>{"who", "is", "tom", "?"}));
  EXPECT_NE(t.target_vocab.id("tom"), data::Vocab::unk_id);
  EXPECT_EQ(t.target_vocab.id("Tom"), data::Vocab::unk_id);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln

// Checkpoint tools: `kiln average` and `kiln train --ema`.

namespace kiln {
namespace {

std::map<std::string, std::vector<float>> weights_of(const fs::path& file) {
  std::map<std::string, std::vector<float>> weights;
  for (const auto& [name, tensor] : safetensors::load(file.string()).tensors)
    weights[name] = tensor.to_vector<float>();
  return weights;
}

std::string bytes_of(const fs::path& file) { return data::read_text_file("test", file.string()); }

TEST(CliAverage, OfIdenticalCheckpointsEqualsThemAndCannotBeResumed) {
  fs::path dir = temp_dir("cli_average_same"), run = dir / "run", averaged = dir / "averaged";
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.epochs = 1;
  seq2seq::train(o, run.string());
  std::string last = (run / "last").string(), log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln("average --checkpoints " + last + " " + last + " " + last + " --out " +
                         averaged.string(),
                     log),
            0)
      << bytes_of(log);
  EXPECT_CONTAINS(bytes_of(log), "averaged 3 checkpoints (");
  EXPECT_EQ(weights_of(averaged / "model.safetensors"), weights_of(run / "last/model.safetensors"));
  EXPECT_FALSE(fs::exists(averaged / "optimizer.safetensors"));
  EXPECT_CONTAINS(bytes_of(averaged / "averaged.json"), last);
  // It is a checkpoint translate loads, and translates as its source does.
  seq2seq::Translator from_average = seq2seq::Translator::load(averaged.string());
  seq2seq::Translator from_last = seq2seq::Translator::load(last);
  EXPECT_EQ(from_average.translate({"a b c d"})[0][0].tokens,
            from_last.translate({"a b c d"})[0][0].tokens);
  // Resume has nothing to continue from.
  o.epochs = 2;
  EXPECT_CONTAINS(
      testing::error_of([&] { seq2seq::train(o, (dir / "resumed").string(), averaged.string()); }),
      "is an average of checkpoints");
  // Averaging again into the same --out replaces it; any other existing folder is refused.
  EXPECT_EQ(
      run_kiln("average --checkpoints " + last + " " + last + " --out " + averaged.string(), log),
      0)
      << bytes_of(log);
  EXPECT_NE(run_kiln("average --checkpoints " + last + " " + last + " --out " + run.string(), log),
            0);
  EXPECT_CONTAINS(bytes_of(log), "exists and is not a checkpoint written by kiln average");
  EXPECT_NE(run_kiln("average --checkpoints " + last + " --out " + (dir / "one").string(), log), 0);
  EXPECT_CONTAINS(bytes_of(log), "give at least two checkpoints, got 1");
  fs::remove_all(dir);
}

TEST(CliAverage, OfTwoCheckpointsIsTheElementwiseMean) {
  fs::path dir = temp_dir("cli_average_two"), run = dir / "run", averaged = dir / "averaged";
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.epochs = 1;
  seq2seq::train(o, run.string());
  fs::copy(run / "last", dir / "epoch1");
  o.epochs = 2;
  seq2seq::train(o, run.string(), (run / "last").string());
  seq2seq::average_checkpoints({(dir / "epoch1").string(), (run / "last").string()},
                               averaged.string());
  auto a = weights_of(dir / "epoch1/model.safetensors"),
       b = weights_of(run / "last/model.safetensors");
  auto mean = weights_of(averaged / "model.safetensors");
  ASSERT_EQ(mean.size(), a.size());
  for (const auto& [name, x] : a) {
    std::vector<float> expected;
    for (size_t i = 0; i < x.size(); ++i)
      expected.push_back(static_cast<float>((double(x[i]) + double(b[name][i])) / 2));
    EXPECT_EQ(mean[name], expected) << name;
    EXPECT_NE(mean[name], x) << name;
  }
  std::string log = (dir / "log.txt").string();
  ASSERT_EQ(
      run_kiln("eval --checkpoint " + averaged.string() + " --task reverse --task-size 40", log), 0)
      << bytes_of(log);
  EXPECT_CONTAINS(bytes_of(log), "\nBLEU ");
  fs::remove_all(dir);
}

TEST(CliAverage, MismatchedCheckpointsAreRefusedNamingTheFolder) {
  fs::path dir = temp_dir("cli_average_mismatch");
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.epochs = 1;
  seq2seq::train(o, (dir / "a").string());
  o.model.hidden_size = 8;
  seq2seq::train(o, (dir / "b").string());
  std::string a = (dir / "a/last").string(), b = (dir / "b/last").string();
  std::string error = testing::error_of([&] {
    seq2seq::average_checkpoints({a, b}, (dir / "out").string());
  });
  EXPECT_CONTAINS(error, b + "/config.json: model field 'hidden_size' is 8, but 16 in " + a);
  // The same model with another vocabulary: the first differing line is named.
  fs::copy(a, dir / "c");
  std::string vocab = bytes_of(dir / "c/target_vocab.txt");
  std::string first_line = vocab.substr(0, vocab.find('\n'));
  std::ofstream(dir / "c/target_vocab.txt") << "x" << vocab;
  error = testing::error_of([&] {
    seq2seq::average_checkpoints({a, (dir / "c").string()}, (dir / "out").string());
  });
  EXPECT_CONTAINS(error, "c/target_vocab.txt differs from " + a +
                             "/target_vocab.txt (line 1 is 'x" + first_line + "', not '" +
                             first_line + "')");
  EXPECT_CONTAINS(testing::error_of([&] {
                    seq2seq::average_checkpoints({a, a}, a);
                  }),
                  "is one of the checkpoints to average");
  EXPECT_FALSE(fs::exists(dir / "out"));
  fs::remove_all(dir);
}

TEST(CliEma, SavesTheAverageValidatesWithItAndResumesExactly) {
  fs::path full = temp_dir("cli_ema_full"), split = temp_dir("cli_ema_split");
  seq2seq::TrainOptions o = tiny_reverse_options();
  o.ema = 0.9;
  std::vector<seq2seq::EpochMetrics> uninterrupted = seq2seq::train(o, full.string());
  ASSERT_EQ(uninterrupted.size(), 3u);
  // model.safetensors holds the average, raw_model.safetensors the weights trained.
  auto averaged = weights_of(full / "last/model.safetensors");
  auto raw = weights_of(full / "last/raw_model.safetensors");
  ASSERT_EQ(averaged.size(), raw.size());
  for (const auto& [name, values] : raw) EXPECT_NE(averaged[name], values) << name;
  seq2seq::TrainState state = seq2seq::load_train_state((full / "last").string());
  EXPECT_EQ(state.ema_updates, state.steps);
  // Validation used the average: the saved model gives the same validation loss.
  seq2seq::Translator t = seq2seq::Translator::load((full / "last").string());
  EXPECT_EQ(t.mean_nll(seq2seq::load_data(t.options, nullptr).valid),
            uninterrupted.back().valid_loss);

  seq2seq::TrainOptions first = o;
  first.epochs = 1;
  seq2seq::train(first, split.string());
  std::vector<seq2seq::EpochMetrics> resumed =
      seq2seq::train(o, split.string(), (split / "last").string());
  ASSERT_EQ(resumed.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {  // bit for bit on the CPU
    EXPECT_EQ(resumed[i].train_loss, uninterrupted[i + 1].train_loss) << i;
    EXPECT_EQ(resumed[i].valid_loss, uninterrupted[i + 1].valid_loss) << i;
  }
  EXPECT_EQ(bytes_of(split / "last/model.safetensors"), bytes_of(full / "last/model.safetensors"));
  EXPECT_EQ(bytes_of(split / "last/raw_model.safetensors"),
            bytes_of(full / "last/raw_model.safetensors"));
  fs::remove_all(full);
  fs::remove_all(split);
}

TEST(CliEma, DecayOutsideZeroToOneIsRefused) {
  seq2seq::TrainOptions o = tiny_reverse_options();
  for (double decay : {1.0, -0.5, 1.5, std::nan("")}) {
    o.ema = decay;
    EXPECT_CONTAINS(testing::error_of([&] { o.validate(); }), "ema decay must be in (0, 1)");
  }
  o.ema = 0;  // off
  o.validate();
  fs::path dir = temp_dir("cli_ema_bad");
  std::string log = (dir / "log.txt").string();
  EXPECT_NE(run_kiln("train --task reverse --ema 1 --out " + (dir / "run").string(), log), 0);
  EXPECT_CONTAINS(bytes_of(log), "--ema: must be in (0, 1), e.g. 0.999, got '1'");
  std::ofstream(dir / "config.json") << R"({"task": "reverse", "ema": 1.0})";
  EXPECT_NE(run_kiln("train --config " + (dir / "config.json").string() + " --out " +
                         (dir / "run").string(),
                     log),
            0);
  EXPECT_CONTAINS(bytes_of(log), "ema decay must be in (0, 1)");
  EXPECT_FALSE(fs::exists(dir / "run"));
  fs::remove_all(dir);
}

// Checkpoints written before --ema existed: no "ema" in config.json, no "ema_updates" in
// state.json.
TEST(CliEma, OldCheckpointFilesLoadWithoutIt) {
  EXPECT_EQ(seq2seq::TrainOptions::from_json(R"({"task": "reverse"})", "config.json").ema, 0.0);
  const char* old_state = R"({"epoch": 2, "rng_seed": 1, "rng_offset": 40})";
  EXPECT_EQ(seq2seq::parse_train_state(old_state, "state.json").ema_updates, 0);
  EXPECT_CONTAINS(testing::error_of([] {
                    seq2seq::parse_train_state(
                        R"({"epoch": 2, "rng_seed": 1, "rng_offset": 40, "ema_updates": -1})",
                        "state.json");
                  }),
                  "ema_updates");
}

}  // namespace
}  // namespace kiln
