// kiln translate's input path (issue 10, defect 7): stdin lines are cleaned as corpus lines are
// (data::parse_input_lines: CRLF, BOM, strict UTF-8, trim), a blank line gives an empty output
// line, a line with invalid UTF-8 is reported as stdin:LINE and written as an empty line (fatal
// with --strict). The library function first, then the kiln binary end to end.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "models/data/corpus.h"
#include "models/data/text_file.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

TEST(TranslateInput, CrlfBomAndSpacesAreCleanedLikeCorpusLines) {
  data::InputLines input = data::parse_input_lines("\xEF\xBB\xBF  3 5 5\r\n12\t\r\n", "stdin");
  ASSERT_EQ(input.sentences, (std::vector<std::string>{"3 5 5", "12"}));
  EXPECT_EQ(input.skipped, 0);
  // The same bytes as both sides of an aligned corpus give the same sentences.
  const std::string text = "\xEF\xBB\xBFgo .\r\n  i lost .  \r\nhe's calm .";
  data::Corpus corpus = data::parse_parallel(text, text, "a", "b");
  data::InputLines lines = data::parse_input_lines(text, "stdin");
  ASSERT_EQ(corpus.pairs.size(), lines.sentences.size());
  for (size_t i = 0; i < lines.sentences.size(); ++i)
    EXPECT_EQ(corpus.pairs[i].source, lines.sentences[i]);
}

TEST(TranslateInput, OneSentencePerLineBlankLinesStayEmpty) {
  data::InputLines input = data::parse_input_lines("a b\n\n   \r\nc\n", "stdin");
  EXPECT_EQ(input.sentences, (std::vector<std::string>{"a b", "", "", "c"}));
  EXPECT_TRUE(data::parse_input_lines("", "stdin").sentences.empty());
  EXPECT_EQ(data::parse_input_lines("x", "stdin").sentences, std::vector<std::string>{"x"});
}

TEST(TranslateInput, InvalidUtf8IsReportedWithTheLineAndSkipped) {
  data::InputLines input = data::parse_input_lines("good\nbad \xFF here\nok\n", "stdin");
  EXPECT_EQ(input.sentences, (std::vector<std::string>{"good", "", "ok"}));
  EXPECT_EQ(input.skipped, 1);
  ASSERT_EQ(input.problems.size(), 1u);
  EXPECT_EQ(input.problems[0], "stdin:2: invalid UTF-8 at byte 5 of the line (0xFF)");
  data::ReadOptions strict;
  strict.skip_bad_lines = false;
  EXPECT_EQ(
      testing::error_of([&] { data::parse_input_lines("good\nbad \xFF\n", "stdin", strict); }),
      "stdin:2: invalid UTF-8 at byte 5 of the line (0xFF)");
}

// The kiln binary beside these tests, or $KILN_CLI. stdout and stderr go to separate files.
int run_kiln(const std::string& args, const fs::path& out, const fs::path& err) {
  const char* override_path = std::getenv("KILN_CLI");
  std::string binary = override_path ? override_path : KILN_CLI_PATH;
  std::string command = binary + " " + args + " > " + out.string() + " 2> " + err.string();
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> lines_of(const fs::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(TranslateInputBinary, CrlfEmptyAndBadLinesStayAligned) {
  fs::path dir = fs::temp_directory_path() / ("kiln_translate_input_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path out = dir / "out.txt", err = dir / "err.txt", run = dir / "run";
  ASSERT_EQ(run_kiln("train --task reverse --task-size 200 --epochs 1 --hidden 16 --embed 8 "
                     "--layers 1 --quiet --out " +
                         run.string(),
                     out, err),
            0)
      << data::read_text_file("test", err.string());
  const std::string checkpoint = "translate --checkpoint " + (run / "last").string();

  // n-best output shows each hypothesis' score, which depends on every source token, so a
  // "5\r" read as <unk> (the bug) changes it even where an undertrained model's text does not.
  const std::string nbest = checkpoint + " --beam 2 --n-best 2 < ";
  std::ofstream(dir / "lf.txt", std::ios::binary) << "a b c\nd e\n";
  ASSERT_EQ(run_kiln(nbest + (dir / "lf.txt").string(), out, err), 0);
  const std::vector<std::string> lf = lines_of(out);
  ASSERT_EQ(lf.size(), 6u);  // two blocks: 2 hypotheses and a blank line each
  ASSERT_EQ(run_kiln(checkpoint + " < " + (dir / "lf.txt").string(), out, err), 0);
  const std::vector<std::string> expected = lines_of(out);
  ASSERT_EQ(expected.size(), 2u);

  // CRLF endings, a BOM, a blank line and a line with invalid UTF-8: one output per input line.
  std::ofstream(dir / "crlf.txt", std::ios::binary) << "\xEF\xBB\xBF"
                                                       "a b c\r\n\r\nd \xC3\x28 e\r\nd e\r\n";
  ASSERT_EQ(run_kiln(checkpoint + " < " + (dir / "crlf.txt").string(), out, err), 0)
      << data::read_text_file("test", err.string());
  EXPECT_EQ(lines_of(out), (std::vector<std::string>{expected[0], "", "", expected[1]}));
  EXPECT_CONTAINS(data::read_text_file("test", err.string()),
                  "stdin:3: invalid UTF-8 at byte 3 of the line (0xC3)");
  ASSERT_EQ(run_kiln(nbest + (dir / "crlf.txt").string(), out, err), 0);
  const std::vector<std::string> empty_block = {"1\t0.0000\t", ""};
  std::vector<std::string> want(lf.begin(), lf.begin() + 3);
  for (int i = 0; i < 2; ++i) want.insert(want.end(), empty_block.begin(), empty_block.end());
  want.insert(want.end(), lf.begin() + 3, lf.end());
  EXPECT_EQ(lines_of(out), want);

  // --strict: the bad line is fatal, named by its line.
  EXPECT_NE(run_kiln(checkpoint + " --strict < " + (dir / "crlf.txt").string(), out, err), 0);
  EXPECT_CONTAINS(data::read_text_file("test", err.string()), "stdin:3: invalid UTF-8");

  // The library: a sentence without tokens is one empty hypothesis, the others as alone.
  seq2seq::Translator t = seq2seq::Translator::load((run / "last").string());
  auto mixed = t.translate({"a b c", "", "d e"});
  ASSERT_EQ(mixed.size(), 3u);
  ASSERT_EQ(mixed[1].size(), 1u);
  EXPECT_TRUE(mixed[1][0].tokens.empty());
  EXPECT_EQ(t.to_text(mixed[1][0]), "");
  auto alone = t.translate({"a b c", "d e"});
  EXPECT_EQ(mixed[0][0].tokens, alone[0][0].tokens);
  EXPECT_EQ(mixed[2][0].tokens, alone[1][0].tokens);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln
