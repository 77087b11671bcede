// Bad input is a clear error naming the file, the field and what was wrong, never an abort, a
// silently accepted value or an unbounded run (issue 10, defects 1, 8, 9 and 10). Each test here
// failed before its fix.
#include <chrono>
#include <filesystem>
#include <fstream>

#include "cli_util.h"
#include "models/data/text_file.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::run_kiln;
using testing::temp_dir;

seq2seq::TrainOptions tiny_options() {
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.task_size = 200;
  o.valid_pairs = 20;
  o.epochs = 1;
  o.model.embed_size = 8;
  o.model.hidden_size = 16;
  o.model.num_layers = 1;
  o.bleu_sentences = 5;
  o.quiet = true;
  return o;
}

// One trained checkpoint shared by the tests of this file (a second of training).
const fs::path& checkpoint() {
  static fs::path dir = [] {
    fs::path out = temp_dir("bad_input");
    seq2seq::train(tiny_options(), out.string());
    return out / "last";
  }();
  return dir;
}

// A copy of the checkpoint whose `file` holds `text`.
fs::path damaged(const std::string& name, const std::string& file, const std::string& text) {
  fs::path copy = temp_dir("bad_input_" + name);
  fs::copy(checkpoint(), copy, fs::copy_options::recursive);
  std::ofstream(copy / file, std::ios::trunc) << text;
  return copy;
}

std::string state_json(const std::string& epoch_field) {
  return "{" + epoch_field + "\"steps\": 7, \"rng_seed\": 1, \"rng_offset\": 96}";
}

TEST(BadInput, DamagedStateJsonNamesTheFileAndField) {
  fs::path dir = damaged("state_cut", "state.json", "{\"epoch\": 12,");
  std::string msg = error_of([&] { seq2seq::load_train_state(dir.string()); });
  EXPECT_CONTAINS(msg, (dir / "state.json").string());
  EXPECT_CONTAINS(msg, "not valid JSON");

  std::ofstream(dir / "state.json", std::ios::trunc) << state_json("");
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_train_state(dir.string()); }),
                  "missing field 'epoch'");
  std::ofstream(dir / "state.json", std::ios::trunc) << state_json("\"epoch\": -5, ");
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_train_state(dir.string()); }),
                  "field 'epoch': expected an integer >= 0, got -5");
  std::ofstream(dir / "state.json", std::ios::trunc)
      << "{\"epoch\": 1, \"rng_seed\": \"one\", \"rng_offset\": 96}";
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_train_state(dir.string()); }),
                  "field 'rng_seed': expected an integer >= 0, got \"one\"");
  std::ofstream(dir / "state.json", std::ios::trunc) << state_json("\"epoch\": 1, \"epoc\": 2, ");
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_train_state(dir.string()); }),
                  "unknown field 'epoc'");
  fs::remove_all(dir);
}

TEST(BadInput, ResumeFromDamagedStateIsAMessageNotAnAbort) {
  fs::path dir = damaged("state_cli", "state.json", "{\"epoch\": 12,");
  fs::path out = temp_dir("bad_input_resume"), log = out / "log.txt";
  EXPECT_EQ(run_kiln("train --resume " + dir.string() + " --out " + (out / "run").string() +
                         " --epochs 13",
                     log.string()),
            1);
  std::string printed = data::read_text_file("test", log.string());
  EXPECT_CONTAINS(printed, "kiln: error: " + (dir / "state.json").string() + ": not valid JSON");
  fs::remove_all(dir);
  fs::remove_all(out);
}

// The shared checkpoint's config.json with `from` replaced by `to`.
std::string config_with(const std::string& from, const std::string& to) {
  std::string text = data::read_text_file("test", (checkpoint() / "config.json").string());
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

// The error of loading a copy of the checkpoint whose config.json is `text`.
std::string config_error(const std::string& text) {
  fs::path dir = damaged("config", "config.json", text);
  std::string msg = error_of([&] { seq2seq::Translator::load(dir.string()); });
  fs::remove_all(dir);
  return msg;
}

TEST(BadInput, ConfigJsonFieldsAreCheckedByTypeAndRange) {
  std::string msg = config_error(config_with("\"hidden_size\": 16", "\"hidden_size\": 128.5"));
  EXPECT_CONTAINS(msg, "config.json: field 'model.hidden_size': expected an integer, got 128.5");
  msg = config_error(config_with("\"bos_id\": 2", "\"bos_id\": 500"));
  EXPECT_CONTAINS(msg, "config.json: model config: bos_id 500 is out of range");
  msg = config_error(config_with("\"lr\":", "\"lr\": \"fast\", \"lr_old\":"));
  EXPECT_CONTAINS(msg, "config.json: field 'lr': expected a finite number, got \"fast\"");
  msg = config_error(config_with("\"epochs\": 1", "\"epochs\": 1, \"epoch\": 1"));
  EXPECT_CONTAINS(msg, "config.json: unknown field 'epoch'");
  msg = config_error(config_with("\"epochs\": 1", "\"epochs\": -5"));
  EXPECT_CONTAINS(msg, "config.json: train: epochs must be >= 0, got -5");
}

// The punctuation spacing a run learned (config.json) is checked like any field; a config.json
// from before the `lowercase` option was lowercased, and loading it keeps lowercasing.
TEST(BadInput, ConfigJsonPunctuationSpacingAndOldLowercasing) {
  EXPECT_CONTAINS(config_error(config_with("\"punctuation_spacing\": {}",
                                           "\"punctuation_spacing\": {\"!\": \"x\"}")),
                  "config.json: train: punctuation_spacing: '!' -> 'x' is not one of , . ! ? -> "
                  "\"\", \" \", U+202F or U+00A0");
  EXPECT_CONTAINS(config_error(config_with("\"punctuation_spacing\": {}",
                                           "\"punctuation_spacing\": {\";\": \"\"}")),
                  "config.json: unknown field 'punctuation_spacing.;'");
  EXPECT_CONTAINS(config_error(config_with("\"punctuation_spacing\": {}",
                                           "\"punctuation_spacing\": {\"?\": 1}")),
                  "config.json: field 'punctuation_spacing.?': expected a string, got 1");

  EXPECT_CONTAINS(data::read_text_file("test", (checkpoint() / "config.json").string()),
                  "\"lowercase\": false");  // new runs keep the case
  fs::path old = damaged("config_old", "config.json", config_with("\"lowercase\": false,", ""));
  seq2seq::Translator t = seq2seq::Translator::load(old.string());
  EXPECT_TRUE(t.options.lowercase);
  EXPECT_EQ(t.source_tokenizer->tokenize("A B."), (std::vector<std::string>{"a", "b", "."}));
  fs::remove_all(old);
}

TEST(BadInput, WeightsAndOptimizerStateThatDoNotFitNameTheFile) {
  // A checkpoint of another size: every tensor mismatches.
  fs::path other = temp_dir("bad_input_other");
  seq2seq::TrainOptions o = tiny_options();
  o.model.hidden_size = 8;
  seq2seq::train(o, other.string());
  fs::path dir = damaged("weights", "model.safetensors", "");
  fs::copy_file(other / "last" / "model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  std::string msg = error_of([&] { seq2seq::Translator::load(dir.string()); });
  EXPECT_CONTAINS(msg, (dir / "model.safetensors").string() + ": does not fit the model");
  EXPECT_CONTAINS(msg, "load_state_dict");

  fs::copy_file(other / "last" / "optimizer.safetensors", dir / "optimizer.safetensors",
                fs::copy_options::overwrite_existing);
  fs::copy_file(checkpoint() / "model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  fs::path out = temp_dir("bad_input_opt");
  seq2seq::TrainOptions more = tiny_options();
  more.epochs = 2;
  msg = error_of([&] { seq2seq::train(more, out.string(), dir.string()); });
  EXPECT_CONTAINS(msg, (dir / "optimizer.safetensors").string() + ": does not fit the optimizer");
  fs::remove_all(other);
  fs::remove_all(dir);
  fs::remove_all(out);
}

TEST(BadInput, DataWithNothingLeftToTrainOnSaysSo) {
  fs::path dir = temp_dir("bad_input_data");
  std::ofstream(dir / "one.tsv") << "hello .\tbonjour .\n";
  seq2seq::TrainOptions o = tiny_options();
  o.task.clear();
  o.data = (dir / "one.tsv").string();
  o.valid_pairs = 0;  // the default 5% for validation takes the only pair
  std::string msg = error_of([&] { seq2seq::load_data(o, nullptr); });
  EXPECT_CONTAINS(msg,
                  "train: " + o.data + " has 1 usable sentence pair(s) and 1 go to validation");
  EXPECT_CONTAINS(msg, "none is left to train on");

  std::ofstream(dir / "empty.tsv") << "no tab here\n";
  o.data = (dir / "empty.tsv").string();
  EXPECT_CONTAINS(error_of([&] { seq2seq::load_data(o, nullptr, "eval"); }),
                  "eval: " + o.data + " has no usable sentence pairs");
  fs::remove_all(dir);
}

TEST(BadInput, LongSentencesAreCutOrRejected) {
  data::TokenizedPairs pairs;
  pairs.source = {{"a", "b", "c"}, std::vector<std::string>(10, "x")};
  pairs.target = {{"a"}, std::vector<std::string>(7, "y")};
  EXPECT_CONTAINS(error_of([&] { seq2seq::cut_long_pairs(pairs, 5, 5, true, "eval"); }),
                  "eval: pair 2 has 10 source and 7 target tokens, over the limits of 5 and 5");
  EXPECT_EQ(seq2seq::cut_long_pairs(pairs, 5, 5, false, "eval"), 1);
  EXPECT_EQ(pairs.source[1].size(), 5u);
  EXPECT_EQ(pairs.target[1].size(), 5u);
  EXPECT_EQ(pairs.source[0].size(), 3u);  // short pairs untouched
}

TEST(BadInput, AHugeInputLineTranslatesInBoundedTime) {
  seq2seq::Translator t = seq2seq::Translator::load(checkpoint().string());
  std::string huge;
  for (int i = 0; i < 20000; ++i) huge += "a b ";
  EXPECT_EQ(t.count_long_sources({"a b", huge}), 1);
  auto start = std::chrono::steady_clock::now();
  auto beams = t.translate({huge}, 4);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(beams.size(), 1u);
  // Cut to 256 tokens (257 with <eos>), the output is at most ceil(1.5 * 257 + 5) = 391 tokens:
  // about a second here; uncut (40,000 tokens) it took minutes.
  EXPECT_LT(seconds, 30.0);
  EXPECT_LE(beams[0][0].tokens.size(), 391u);

  fs::path dir = temp_dir("bad_input_huge");
  std::ofstream(dir / "in.txt") << "a b\n" << huge << "\n";
  std::string log = (dir / "log.txt").string();
  EXPECT_EQ(run_kiln("translate --checkpoint " + checkpoint().string() +
                         " --max-source-length 50 < " + (dir / "in.txt").string(),
                     log),
            0);
  EXPECT_CONTAINS(data::read_text_file("test", log),
                  "kiln: warning: cut 1 source(s) longer than 50 tokens");
  fs::remove_all(dir);
}

TEST(BadInput, NonFiniteFlagsAreRejected) {
  fs::path dir = temp_dir("bad_input_flags"), log = dir / "log.txt";
  EXPECT_NE(run_kiln("translate --checkpoint " + checkpoint().string() + " --length-penalty nan",
                     log.string()),
            0);
  EXPECT_CONTAINS(data::read_text_file("test", log.string()), "must be a finite number, got 'nan'");
  EXPECT_NE(run_kiln("train --task reverse --weight-decay inf --out " + (dir / "run").string(),
                     log.string()),
            0);
  EXPECT_CONTAINS(data::read_text_file("test", log.string()), "must be a finite number, got 'inf'");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln
