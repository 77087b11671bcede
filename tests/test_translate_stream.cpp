// kiln translate and eval beyond one-shot greedy (issue 11, item 7 and the heatmap of item 8):
// stdin answered line by line while it is still open, batches sorted by length with the output in
// input order, --scores and n-best, --replace-unk from the attention of the decoding used (beam
// included), ensembles of checkpoints, eval --output / --length-penalty, one heatmap per line.
// Two small models are trained once: "reverse" with attention, "numbers-fr" without (another
// vocabulary).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_util.h"
#include "models/data/line_stream.h"
#include "models/data/text_file.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using testing::run_kiln;

class TranslateStream : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::temp_dir("translate_stream");
    seq2seq::TrainOptions o = testing::tiny_reverse_options();
    o.task_size = 400;
    o.model.embed_size = 16;
    o.model.hidden_size = 32;
    o.model.num_layers = 1;
    o.model.dropout = 0;
    o.bleu_sentences = 5;
    seq2seq::train(o, (dir_ / "reverse").string());
    o.task = "numbers-fr";
    o.epochs = 1;
    o.model.attention = seq2seq::Attention::none;
    seq2seq::train(o, (dir_ / "numbers").string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string reverse() { return (dir_ / "reverse" / "last").string(); }
  static std::string numbers() { return (dir_ / "numbers" / "last").string(); }
  // Runs kiln with `input` as stdin; returns the exit code, output and errors in `out`.
  static int kiln(const std::string& args, const std::string& input, std::string& out) {
    const fs::path in = dir_ / "in.txt", log = dir_ / "out.txt";
    std::ofstream(in, std::ios::binary) << input;
    int rc = run_kiln(args + " < " + in.string(), log.string());
    out = data::read_text_file("test", log.string());
    return rc;
  }
  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  static inline fs::path dir_;
};

const std::vector<std::string> kSentences = {
    "a b c d e f", "g", "h i j", "", "k l m n o p q r", "c b", "d", "e f g h i j k", "a a b"};

// A `kiln translate` child with pipes on its stdin and stdout.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;

  explicit Child(const std::vector<std::string>& args) {
    int to_child[2], from_child[2];
    if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) return;
    const char* override_path = std::getenv("KILN_CLI");
    std::string binary = override_path ? override_path : KILN_CLI_PATH;
    pid = ::fork();
    if (pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) ::close(fd);
      std::vector<char*> argv{binary.data()};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(binary.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    in = to_child[1];
    out = from_child[0];
  }
  ~Child() {
    if (in >= 0) ::close(in);
    if (out >= 0) ::close(out);
    if (pid > 0) {
      ::kill(pid, SIGKILL);  // a no-op once it has exited and been waited for
      ::waitpid(pid, nullptr, 0);
    }
  }
  void write(const std::string& text) const {
    ASSERT_EQ(::write(in, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  void close_input() {
    ::close(in);
    in = -1;
  }
  // The next line of its stdout without the '\n'; false on EOF or after `seconds` without one.
  bool read_line(std::string& line, int seconds = 60) const {
    line.clear();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      pollfd p{out, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      char c;
      if (::read(out, &c, 1) != 1) return false;
      if (c == '\n') return true;
      line += c;
    }
  }
  // Its exit code, waiting at most `seconds` (then killed: -1).
  int wait(int seconds = 60) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      ::usleep(50000);
    }
    return -1;
  }
};

TEST(LineStream, LinesAreTakenAsTheyArriveAndCleanedLikeAText) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  data::LineStream stream(fds[0], "stdin");
  const std::string first = "\xEF\xBB\xBF  a b\r\nc d\nhalf";
  ASSERT_EQ(::write(fds[1], first.data(), first.size()), static_cast<ssize_t>(first.size()));
  // The incomplete "half" waits; the two complete lines come at the pause.
  EXPECT_EQ(stream.next(10, 20).sentences, (std::vector<std::string>{"a b", "c d"}));
  const std::string second = " line\nbad \xFF\nx\ny\n";
  ASSERT_EQ(::write(fds[1], second.data(), second.size()), static_cast<ssize_t>(second.size()));
  data::InputLines two = stream.next(2, 20);  // at most 2, even with more ready
  EXPECT_EQ(two.sentences, (std::vector<std::string>{"half line", ""}));
  ASSERT_EQ(two.problems.size(), 1u);
  EXPECT_EQ(two.problems[0], "stdin:4: invalid UTF-8 at byte 5 of the line (0xFF)");
  ASSERT_EQ(::write(fds[1], "last", 4), 4);
  ::close(fds[1]);
  // The end of the input ends the last line, then every call says "ended".
  EXPECT_EQ(stream.next(10, 20).sentences, (std::vector<std::string>{"x", "y", "last"}));
  EXPECT_TRUE(stream.next(10, 20).sentences.empty());
  ::close(fds[0]);
  // The same bytes as one text give the same sentences.
  EXPECT_EQ(data::parse_input_lines(first + second + "last", "stdin").sentences,
            (std::vector<std::string>{"a b", "c d", "half line", "", "x", "y", "last"}));
}

TEST_F(TranslateStream, EachLineIsAnsweredBeforeStdinCloses) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  auto expected = t.translate({"a b c", "d e", "f g"});
  Child child({"translate", "--checkpoint", reverse()});
  ASSERT_GT(child.pid, 0);
  std::string line;
  child.write("a b c\n");
  ASSERT_TRUE(child.read_line(line)) << "no answer while stdin is open";
  EXPECT_EQ(line, t.to_text(expected[0][0]));
  child.write("d e\n");
  ASSERT_TRUE(child.read_line(line));
  EXPECT_EQ(line, t.to_text(expected[1][0]));
  child.write("f g");  // no '\n': answered when stdin closes
  child.close_input();
  ASSERT_TRUE(child.read_line(line));
  EXPECT_EQ(line, t.to_text(expected[2][0]));
  EXPECT_FALSE(child.read_line(line, 10));
  EXPECT_EQ(child.wait(), 0);
}

TEST_F(TranslateStream, SortedBatchesKeepInputOrder) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  for (int64_t beam : {1, 3}) {
    seq2seq::TranslateOptions how;
    how.beam_size = beam;
    how.batch_size = 64;
    auto together = t.translate(kSentences, how);
    how.batch_size = 2;
    auto small = t.translate(kSentences, how);
    ASSERT_EQ(small.size(), kSentences.size());
    for (size_t i = 0; i < kSentences.size(); ++i) {
      SCOPED_TRACE(kSentences[i]);
      auto alone = t.translate({kSentences[i]}, how)[0][0];
      EXPECT_EQ(small[i][0].tokens, alone.tokens);
      EXPECT_EQ(together[i][0].tokens, alone.tokens);
      EXPECT_NEAR(small[i][0].score, alone.score, 1e-4);
    }
  }
  // The binary: any batch size, the same lines in the same order.
  std::string input, out64, out2;
  for (const std::string& s : kSentences) input += s + "\n";
  ASSERT_EQ(kiln("translate --checkpoint " + reverse(), input, out64), 0) << out64;
  ASSERT_EQ(kiln("translate --batch-size 2 --checkpoint " + reverse(), input, out2), 0) << out2;
  EXPECT_EQ(out2, out64);
  std::vector<std::string> got = lines(out64);
  ASSERT_EQ(got.size(), kSentences.size());
  auto greedy = t.translate(kSentences);
  for (size_t i = 0; i < kSentences.size(); ++i) EXPECT_EQ(got[i], t.to_text(greedy[i][0]));
}

TEST_F(TranslateStream, ScoresAreLengthNormalizedLogProbabilities) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  std::string input;
  for (const std::string& s : kSentences) input += s + "\n";
  std::string out;
  ASSERT_EQ(kiln("translate --scores --length-penalty 0.5 --checkpoint " + reverse(), input, out),
            0)
      << out;
  auto greedy = t.translate(kSentences, 1, 1, 0.5);
  std::vector<std::string> got = lines(out);
  ASSERT_EQ(got.size(), kSentences.size());
  for (size_t i = 0; i < kSentences.size(); ++i) {
    const seq2seq::Hypothesis& h = greedy[i][0];
    if (!h.tokens.empty()) {  // score = log p / length^alpha, <eos> counted
      EXPECT_NEAR(h.score, h.log_prob / std::sqrt(static_cast<double>(h.tokens.size())), 1e-9);
      EXPECT_LT(h.score, 0);
    }
    char want[64];
    std::snprintf(want, sizeof want, "%.4f\t", h.score);
    EXPECT_EQ(got[i], want + t.to_text(h));
  }
  // n-best: rank, score, text per hypothesis, best first, a blank line after each sentence.
  ASSERT_EQ(
      kiln("translate --scores --beam 3 --n-best 3 --checkpoint " + reverse(), "a b c\nd\n", out),
      0)
      << out;
  got = lines(out);
  ASSERT_EQ(got.size(), 8u);
  auto beams = t.translate({"a b c", "d"}, 3, 3);
  for (size_t s = 0; s < 2; ++s) {
    for (size_t k = 0; k < 3; ++k) {
      char want[64];
      std::snprintf(want, sizeof want, "%zu\t%.4f\t", k + 1, beams[s][k].score);
      EXPECT_EQ(got[s * 4 + k], want + t.to_text(beams[s][k]));
      if (k > 0) {
        EXPECT_GE(beams[s][k - 1].score, beams[s][k].score);
      }
    }
    EXPECT_EQ(got[s * 4 + 3], "");
  }
}

TEST_F(TranslateStream, BeamAttentionFollowsTheChosenHypothesis) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  const std::vector<std::string> sentences = {"a b c d", "e f", "g h i j k"};
  auto greedy = t.translate(sentences, 1, 1, 1.0, true);
  seq2seq::TranslateOptions how;
  how.beam_size = 4;
  how.n_best = 2;
  how.keep_attention = true;
  how.batch_size = 2;
  auto beams = t.translate(sentences, how);
  for (size_t i = 0; i < sentences.size(); ++i) {
    ASSERT_EQ(greedy[i][0].attention.size(), greedy[i][0].tokens.size());
    const size_t columns = t.source_tokens(sentences[i]).size() + 1;  // and <eos>
    for (const seq2seq::Hypothesis& h : beams[i]) {
      ASSERT_EQ(h.attention.size(), h.tokens.size());
      // Replaying the hypothesis' tokens on the model alone gives the same rows: each beam's
      // rows moved with it through every reorder.
      data::Batch batch;
      std::vector<int64_t> ids = t.source_vocab.encode(t.source_tokens(sentences[i]));
      ids.push_back(data::Vocab::eos_id);
      Tensor source = from_vector(ids, {static_cast<int64_t>(ids.size()), 1});
      Tensor lengths = from_vector(std::vector<int64_t>{static_cast<int64_t>(ids.size())}, {1});
      seq2seq::Seq2SeqStepper replay(*t.model, source, lengths, 1, true);
      int64_t previous = data::Vocab::bos_id;
      for (size_t step = 0; step < h.tokens.size(); ++step) {
        replay.step(from_vector(std::vector<int64_t>{previous}, {1}));
        std::vector<float> row = to(replay.last_attention(), DType::f32).to_vector<float>();
        ASSERT_EQ(h.attention[step].size(), columns);
        for (size_t j = 0; j < columns; ++j) EXPECT_NEAR(h.attention[step][j], row[j], 1e-5);
        previous = h.tokens[step];
      }
    }
  }
}

TEST_F(TranslateStream, ReplaceUnkCopiesTheMostAttendedSourceWord) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  const std::string word = t.target_vocab.tokens().at(4);
  seq2seq::Hypothesis h;
  h.tokens = {data::Vocab::unk_id, t.target_vocab.encode({word})[0], data::Vocab::unk_id,
              data::Vocab::eos_id};
  // Source "x y z" + <eos>: step 0 attends to z, step 2 to x; <eos>'s column never counts.
  h.attention = {{0.1f, 0.2f, 0.3f, 0.4f}, {1, 0, 0, 0}, {0.35f, 0.3f, 0.05f, 0.3f}, {0, 0, 0, 1}};
  EXPECT_EQ(t.to_text(h), "<unk> " + word + " <unk>");
  EXPECT_EQ(t.to_text(h, "x y z"), "z " + word + " x");
  h.attention.clear();
  EXPECT_CONTAINS(testing::error_of([&] { t.to_text(h, "x y z"); }), "no attention");

  // The binary with beam search: each output is the library's replacement.
  const std::vector<std::string> sentences = {"a qq b", "zz y x", "c"};
  auto beams = t.translate(sentences, 3, 1, 1.0, true);
  std::string out;
  ASSERT_EQ(kiln("translate --beam 3 --replace-unk --checkpoint " + reverse(),
                 "a qq b\nzz y x\nc\n", out),
            0)
      << out;
  std::vector<std::string> got = lines(out);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i], t.to_text(beams[i][0], sentences[i]));
    EXPECT_EQ(got[i].find("<unk>"), std::string::npos) << got[i];
  }
  ASSERT_NE(kiln("translate --replace-unk --checkpoint " + numbers(), "1\n", out), 0);
  EXPECT_CONTAINS(out, "--replace-unk: the model in " + numbers() + " has no attention (none)");
}

TEST_F(TranslateStream, EnsembleOfOneOrOfTheSameModelEqualsTheModel) {
  seq2seq::Translator single = seq2seq::Translator::load(reverse());
  seq2seq::Translator one = seq2seq::Translator::load(std::vector<std::string>{reverse()});
  seq2seq::Translator twice = seq2seq::Translator::load({reverse(), reverse()});
  EXPECT_TRUE(one.ensemble.empty());
  EXPECT_EQ(twice.ensemble.size(), 1u);
  for (int64_t beam : {1, 3}) {
    auto want = single.translate(kSentences, beam, 1, 1.0, true);
    for (const seq2seq::Translator* t : {&one, &twice}) {
      auto got = t->translate(kSentences, beam, 1, 1.0, true);
      for (size_t i = 0; i < kSentences.size(); ++i) {
        EXPECT_EQ(got[i][0].tokens, want[i][0].tokens);
        EXPECT_EQ(got[i][0].score, want[i][0].score);  // (a + a) / 2 == a exactly
        EXPECT_EQ(got[i][0].attention, want[i][0].attention);
      }
    }
  }
  // A real ensemble of two different models changes the scores and still decodes.
  fs::path other = dir_ / "reverse_other";
  seq2seq::TrainOptions o = seq2seq::TrainOptions::from_json(
      data::read_text_file("test", reverse() + "/config.json"), "config.json");
  o.model.hidden_size = 24;  // another model on the same generated task: the same vocabularies
  o.epochs = 1;
  o.quiet = true;
  seq2seq::train(o, other.string());
  seq2seq::Translator pair = seq2seq::Translator::load({reverse(), (other / "last").string()});
  auto mixed = pair.translate({"a b c"}, 3, 1);
  EXPECT_NE(mixed[0][0].score, single.translate({"a b c"}, 3, 1)[0][0].score);

  std::string alone, both;
  ASSERT_EQ(kiln("translate --beam 2 --scores --checkpoint " + reverse(), "a b c\nd e\n", alone),
            0);
  ASSERT_EQ(
      kiln("translate --beam 2 --scores --checkpoint " + reverse() + " --checkpoint " + reverse(),
           "a b c\nd e\n", both),
      0)
      << both;
  EXPECT_EQ(both, alone);
}

TEST_F(TranslateStream, BadFlagsAreNamed) {
  std::string out;
  EXPECT_NE(kiln("translate --beam 2 --n-best 3 --checkpoint " + reverse(), "a\n", out), 0);
  EXPECT_CONTAINS(out, "--n-best 3 exceeds --beam 2");
  EXPECT_NE(kiln("translate --batch-size 0 --checkpoint " + reverse(), "a\n", out), 0);
  EXPECT_CONTAINS(out, "--batch-size");
  EXPECT_NE(kiln("translate --length-penalty -1 --checkpoint " + reverse(), "a\n", out), 0);
  EXPECT_CONTAINS(out, "--length-penalty: must be >= 0, got '-1'");
  EXPECT_NE(kiln("translate --checkpoint " + reverse() + " --checkpoint " + numbers(), "a\n", out),
            0);
  EXPECT_CONTAINS(
      out, "ensemble: " + numbers() + " has a different source vocabulary than " + reverse());
  EXPECT_NE(
      kiln("translate --attention-svg " + (dir_ / "svg").string() + " --checkpoint " + numbers(),
           "1\n", out),
      0);
  EXPECT_CONTAINS(out, "--attention-svg: the model in " + numbers() + " has no attention");
  EXPECT_NE(kiln("eval --task reverse --task-size 5 --length-penalty -2 --checkpoint " + reverse(),
                 "", out),
            0);
  EXPECT_CONTAINS(out, "--length-penalty: must be >= 0");
  // The library call the server makes: the same rule, as an error.
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  EXPECT_EQ(testing::error_of([&] { t.translate({"a b"}, 2, 3); }),
            "translate: need 1 <= n_best <= beam_size, got n_best 3 and beam_size 2");
  EXPECT_EQ(testing::error_of([&] { t.translate({"a b"}, 1, 2); }),
            "translate: need 1 <= n_best <= beam_size, got n_best 2 and beam_size 1");
}

TEST_F(TranslateStream, EvalWritesItsTranslationsInInputOrder) {
  const fs::path src = dir_ / "eval.src", tgt = dir_ / "eval.tgt", output = dir_ / "eval.out";
  std::string sources, targets;
  for (const std::string& s : kSentences) {
    if (s.empty()) continue;
    sources += s + "\n";
    targets += s + "\n";  // any reference: the output is what is checked
  }
  std::ofstream(src) << sources;
  std::ofstream(tgt) << targets;
  std::string out, translated;
  const std::string data = " --data-src " + src.string() + " --data-tgt " + tgt.string();
  ASSERT_EQ(kiln("eval --beam 3 --length-penalty 0.6 --batch-size 3 --output " + output.string() +
                     data + " --checkpoint " + reverse(),
                 "", out),
            0)
      << out;
  EXPECT_CONTAINS(out, "pairs 8\nBLEU ");
  ASSERT_EQ(kiln("translate --beam 3 --length-penalty 0.6 --checkpoint " + reverse(), sources,
                 translated),
            0);
  EXPECT_EQ(data::read_text_file("test", output.string()), translated);
  EXPECT_EQ(lines(translated).size(), 8u);
}

TEST_F(TranslateStream, AHeatmapPerLineFromTheBeamWithALegend) {
  seq2seq::Translator t = seq2seq::Translator::load(reverse());
  const fs::path svg = dir_ / "heatmaps";
  std::string out;
  const std::string input = "a b c\n\nd & e <f>\n";
  ASSERT_EQ(
      kiln("translate --beam 3 --attention-svg " + svg.string() + " --checkpoint " + reverse(),
           input, out),
      0)
      << out;
  EXPECT_TRUE(fs::exists(svg / "line-1.svg"));
  EXPECT_FALSE(fs::exists(svg / "line-2.svg"));  // a blank line has nothing to draw
  ASSERT_TRUE(fs::exists(svg / "line-3.svg"));
  auto beams = t.translate({"a b c", "", "d & e <f>"}, 3, 1, 1.0, true);
  for (size_t line : {1u, 3u}) {
    const std::string text =
        data::read_text_file("test", (svg / ("line-" + std::to_string(line) + ".svg")).string());
    EXPECT_CONTAINS(text, "<g id=\"legend\">");
    EXPECT_CONTAINS(text, "attention weight");
    EXPECT_CONTAINS(text, ">0.5</text>");
    // One cell per (target token of the beam's best, source token and <eos>), each titled with
    // the beam's own weight.
    const seq2seq::Hypothesis& best = beams[line - 1][0];
    size_t cells = 0;
    for (size_t at = text.find("<title>"); at != std::string::npos;
         at = text.find("<title>", at + 1))
      ++cells;
    EXPECT_EQ(cells, best.tokens.size() * best.attention[0].size());
    std::ostringstream first;
    first << "<title>" << best.attention[0][0] << "</title>";
    EXPECT_CONTAINS(text, first.str());
  }
  const std::string third = data::read_text_file("test", (svg / "line-3.svg").string());
  EXPECT_CONTAINS(third, ">&amp;</text>");
  EXPECT_CONTAINS(third, "&lt;");
  EXPECT_EQ(third.find(">&<"), std::string::npos);
  EXPECT_CONTAINS(third, ">&lt;eos&gt;</text>");
}

}  // namespace
}  // namespace kiln
