// The translator end to end on a tiny generated corpus: train, checkpoint, translate, evaluate,
// and resume with exactly the losses of an uninterrupted run. Also the kiln binary's error paths.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli_util.h"
#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/report.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

using testing::run_kiln;
using testing::temp_dir;

seq2seq::TrainOptions tiny_options() {
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.task_size = 300;
  o.valid_pairs = 20;
  o.test_pairs = 0;
  o.epochs = 3;
  o.batch_size = 32;
  o.model.embed_size = 8;
  o.model.hidden_size = 16;
  o.model.num_layers = 2;
  o.model.dropout = 0.1;  // dropout draws random numbers: resume must restore the generator
  o.model.attention = seq2seq::Attention::bahdanau;
  o.bleu_sentences = 10;
  o.quiet = true;
  return o;
}

TEST(Cli, TrainCheckpointTranslateAndResumeExactly) {
  fs::path full = temp_dir("full"), split = temp_dir("split");
  std::vector<seq2seq::EpochMetrics> uninterrupted = seq2seq::train(tiny_options(), full.string());
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

  seq2seq::TrainOptions first = tiny_options();
  first.epochs = 1;
  seq2seq::train(first, split.string());
  seq2seq::TrainOptions rest = tiny_options();
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
  fs::path out = temp_dir("spm");
  seq2seq::TrainOptions o = tiny_options();
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
  seq2seq::TrainOptions o = tiny_options();
  o.task.clear();
  o.data = "/nonexistent/fra.txt";
  try {
    seq2seq::train(o, temp_dir("bad").string());
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
  fs::path out = temp_dir("keep");
  seq2seq::TrainOptions o = tiny_options();
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

TEST(CliBinary, TrainTranslateAndErrors) {
  fs::path dir = temp_dir("binary");
  fs::create_directories(dir);
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
  fs::path dir = temp_dir("preset");
  fs::create_directories(dir);
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
  fs::path dir = temp_dir("real_text");
  fs::create_directories(dir);
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
