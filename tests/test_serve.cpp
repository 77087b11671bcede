// `kiln serve` as a client sees it: the kiln binary started as a child process on a free port of
// 127.0.0.1 against a tiny checkpoint trained here, and real HTTP clients (httplib::Client).
// Translations match `kiln translate`; concurrent requests are batched and each gets its own
// answers; bad requests get 400/404/405/413 with a JSON message; SIGTERM and SIGINT stop it with
// exit code 0. Every wait has a timeout, and a child still running at the end is killed.
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "cli_util.h"
#include "models/seq2seq/batcher.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/shortlist.h"
#include "models/seq2seq/trainer.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using testing::read_file;

// `kiln serve ARGS` as a child process, its output in a file; killed if still running at the end.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, fs::path log) : log_(std::move(log)) {
    const char* override_path = std::getenv("KILN_CLI");
    std::vector<std::string> argv_strings = {override_path ? override_path : KILN_CLI_PATH,
                                             "serve"};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::FILE* out = std::freopen(log_.c_str(), "w", stdout);
      if (!out || ::dup2(::fileno(stdout), 2) < 0) ::_exit(126);
      std::vector<char*> argv;
      for (std::string& s : argv_strings) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~ServerProcess() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // The port from "listening on http://127.0.0.1:PORT", or 0 (with the output in `error`) when
  // the server exits or prints nothing like it within the timeout.
  int wait_for_port(std::string& error, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (auto end = Clock::now() + timeout; Clock::now() < end;) {
      std::smatch match;
      std::string output = read_file(log_);
      if (std::regex_search(output, match, listening)) return std::stoi(match[1]);
      if (wait_exit(std::chrono::milliseconds(0))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error = "kiln serve did not start listening; its output:\n" + read_file(log_);
    return 0;
  }
  void signal(int number) { ::kill(pid_, number); }
  // The exit code (-1 for a signal) once the process has ended, or nothing after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    for (auto end = Clock::now() + timeout; !exit_code_;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      } else if (Clock::now() >= end) {
        break;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    return exit_code_;
  }
  std::string output() const { return read_file(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// A client with timeouts on every step, so no test can hang on the server.
std::unique_ptr<httplib::Client> client(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_connection_timeout(5);
  c->set_read_timeout(30);
  c->set_write_timeout(10);
  return c;
}

class Serve : public ::testing::Test {
 protected:
  // One tiny model for the suite: the reverse task, trained for two epochs.
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::temp_dir("serve"));
    seq2seq::TrainOptions o = testing::tiny_reverse_options();
    o.epochs = 2;
    o.model.num_layers = 1;
    seq2seq::train(o, dir_->string());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string checkpoint() { return (*dir_ / "last").string(); }

  // Starts `kiln serve` on a free port with `args` added; fails the test if it does not listen.
  std::unique_ptr<ServerProcess> start(const std::string& name,
                                       std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"--checkpoint", checkpoint(), "--port", "0"});
    fs::path log = *dir_ / (name + ".log");  // a new name: an old log would give an old port
    EXPECT_FALSE(fs::exists(log)) << log;
    auto server = std::make_unique<ServerProcess>(args, log);
    std::string error;
    port_ = server->wait_for_port(error);
    EXPECT_GT(port_, 0) << error;
    return server;
  }

  // `kiln translate ARGS` on `lines`: its output lines.
  std::vector<std::string> cli_translate(const std::vector<std::string>& lines,
                                         const std::string& args = "") {
    fs::path input = *dir_ / "input.txt", output = *dir_ / "output.txt";
    std::ofstream(input) << [&] {
      std::string text;
      for (const std::string& line : lines) text += line + "\n";
      return text;
    }();
    EXPECT_EQ(testing::run_kiln(
                  "translate --checkpoint " + checkpoint() + " " + args + " < " + input.string(),
                  output.string()),
              0)
        << read_file(output);
    std::vector<std::string> out;
    std::istringstream in(read_file(output));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  static fs::path* dir_;
  int port_ = 0;
};
fs::path* Serve::dir_ = nullptr;

json post_translate(int port, const json& request, int expected_status = 200) {
  auto result = client(port)->Post("/translate", request.dump(), "application/json");
  EXPECT_TRUE(result) << "no response: " << httplib::to_string(result.error());
  if (!result) return json();
  EXPECT_EQ(result->status, expected_status) << result->body;
  return json::parse(result->body);
}

const std::vector<std::string> kSentences = {"a b c", "d e f g", "h i", "b a",    "g f e d c",
                                             "i h g", "c c a",   "e",   "f a b d"};

TEST_F(Serve, TranslatesAsTheCliDoes) {
  auto server = start("cli", {"--batch-size", "4"});  // 10 sentences: split over 3 batches
  ASSERT_GT(port_, 0);
  std::vector<std::string> lines = kSentences;
  lines.push_back("");  // a blank sentence: one empty hypothesis, as the CLI writes
  json greedy = post_translate(port_, {{"text", lines}});
  std::vector<std::string> expected = cli_translate(lines);
  ASSERT_EQ(greedy["translations"].size(), lines.size());
  ASSERT_EQ(expected.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(greedy["translations"][i].size(), 1u);
    EXPECT_EQ(greedy["translations"][i][0]["text"], expected[i]) << lines[i];
  }

  // n-best with scores: the CLI prints "rank<TAB>score<TAB>text" lines, a blank line after each.
  json nbest = post_translate(port_, {{"text", kSentences}, {"beam", 3}, {"n_best", 2}});
  std::vector<std::string> cli = cli_translate(kSentences, "--beam 3 --n-best 2");
  size_t line = 0;
  for (size_t i = 0; i < kSentences.size(); ++i) {
    const json& hypotheses = nbest["translations"][i];
    ASSERT_EQ(hypotheses.size(), 2u);
    EXPECT_GE(hypotheses[0]["score"].get<double>(), hypotheses[1]["score"].get<double>());
    for (size_t k = 0; k < hypotheses.size(); ++k, ++line) {
      ASSERT_LT(line, cli.size());
      char expected_line[512];
      std::snprintf(expected_line, sizeof expected_line, "%zu\t%.4f\t%s", k + 1,
                    hypotheses[k]["score"].get<double>(),
                    hypotheses[k]["text"].get<std::string>().c_str());
      EXPECT_EQ(cli[line], expected_line) << kSentences[i];
    }
    ++line;  // the blank line
  }

  auto health = client(port_)->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["model"]["attention"], "bahdanau");
  EXPECT_EQ(h["stats"]["requests"], 2);
  EXPECT_EQ(h["stats"]["sentences"], 19);  // 10 + 9
  EXPECT_EQ(h["stats"]["batches"], 6);     // 3 batches of <= 4 for each request
  EXPECT_EQ(h["stats"]["largest_batch"], 4);
}

TEST_F(Serve, BatchesConcurrentRequestsAndAnswersEachItsOwn) {
  auto server =
      start("concurrent", {"--batch-size", "64", "--batch-wait-ms", "1000", "--threads", "16"});
  ASSERT_GT(port_, 0);
  std::vector<std::string> greedy = cli_translate(kSentences);
  std::vector<std::string> beam = cli_translate(kSentences, "--beam 2");
  ASSERT_EQ(greedy.size(), kSentences.size());
  ASSERT_EQ(beam.size(), kSentences.size());

  // 12 clients at once, each with one or two sentences, greedy and beam 2 mixed.
  const int clients = 12;
  std::vector<json> answers(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<std::string> text = {kSentences[c % kSentences.size()]};
      if (c % 3 == 0) text.push_back(kSentences[(c + 4) % kSentences.size()]);
      answers[c] = post_translate(port_, {{"text", text}, {"beam", c % 2 ? 2 : 1}});
    });
  }
  for (std::thread& t : threads) t.join();
  int64_t sentences = 0;
  for (int c = 0; c < clients; ++c) {
    const std::vector<std::string>& expected = c % 2 ? beam : greedy;
    const json& got = answers[c]["translations"];
    ASSERT_EQ(got.size(), c % 3 == 0 ? 2u : 1u) << "client " << c;
    EXPECT_EQ(got[0][0]["text"], expected[c % kSentences.size()]) << "client " << c;
    if (c % 3 == 0) {
      EXPECT_EQ(got[1][0]["text"], expected[(c + 4) % kSentences.size()]) << "client " << c;
    }
    sentences += static_cast<int64_t>(got.size());
  }

  json stats = json::parse(client(port_)->Get("/health")->body)["stats"];
  EXPECT_EQ(stats["requests"], clients);
  EXPECT_EQ(stats["sentences"], sentences);
  // Two settings (greedy, beam 2): batched, far fewer batches than requests.
  EXPECT_LT(stats["batches"].get<int64_t>(), clients / 2) << stats.dump();
  EXPECT_GT(stats["largest_batch"].get<int64_t>(), 2) << stats.dump();
}

TEST_F(Serve, RejectsBadRequestsWithAMessage) {
  auto server = start("bad", {"--max-sentences", "4", "--max-sentence-bytes", "32",
                              "--max-body-bytes", "2000", "--max-beam", "5"});
  ASSERT_GT(port_, 0);
  struct Case {
    std::string body;
    int status;
    std::string message;  // a part of the error message
  };
  const std::vector<Case> cases = {
      {"{\"text\": [\"a b\"", 400, "not valid JSON"},
      {"[\"a b\"]", 400, "expected a JSON object"},
      {"{}", 400, "missing field 'text'"},
      {"{\"text\": \"a b\"}", 400, "field 'text': expected an array of strings"},
      {"{\"text\": [\"a\", 5]}", 400, "field 'text': expected an array of strings"},
      {"{\"text\": [\"a\"], \"beam\": \"2\"}", 400, "field 'beam': expected an integer in [1, 5]"},
      {"{\"text\": [\"a\"], \"beam\": 0}", 400, "field 'beam'"},
      {"{\"text\": [\"a\"], \"beam\": 6}", 400, "field 'beam'"},
      {"{\"text\": [\"a\"], \"beam\": 2.5}", 400, "field 'beam'"},
      {"{\"text\": [\"a\"], \"beam\": 2, \"n_best\": 3}", 400, "field 'n_best': 3 exceeds beam 2"},
      {"{\"text\": [\"a\"], \"length_penalty\": -1}", 400, "field 'length_penalty'"},
      {"{\"text\": [\"a\"], \"beams\": 2}", 400, "unknown field 'beams'"},
      {"{\"text\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400,
       "field 'text': 5 sentences, more than the limit of 4"},
      {"{\"text\": [\"a\", \"" + std::string(33, 'b') + "\"]}", 400,
       "field 'text[1]': 33 bytes, more than the limit of 32"},
      {"{\"text\": [\"a \xff b\"]}", 400, "UTF-8"},
      {"{\"text\": [\"" + std::string(1990, 'a') + "\"]}", 413, "over the limit of 2000 bytes"},
  };
  for (const Case& c : cases) {
    auto result = client(port_)->Post("/translate", c.body, "application/json");
    ASSERT_TRUE(result) << c.body << ": no response: " << httplib::to_string(result.error());
    EXPECT_EQ(result->status, c.status) << c.body << " -> " << result->body;
    json error = json::parse(result->body, nullptr, false);
    ASSERT_TRUE(error.is_object() && error["error"].is_string()) << result->body;
    EXPECT_NE(error["error"].get<std::string>().find(c.message), std::string::npos)
        << c.body.substr(0, 100) << " -> " << error["error"];
  }

  auto missing = client(port_)->Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("no such path '/nothing'"), std::string::npos) << missing->body;
  auto get_translate = client(port_)->Get("/translate");
  ASSERT_TRUE(get_translate);
  EXPECT_EQ(get_translate->status, 405);
  EXPECT_EQ(get_translate->get_header_value("Allow"), "POST");
  auto post_health = client(port_)->Post("/health", "{}", "application/json");
  ASSERT_TRUE(post_health);
  EXPECT_EQ(post_health->status, 405);
  EXPECT_EQ(post_health->get_header_value("Allow"), "GET");

  // Still serving, and nothing bad was counted as translated.
  json ok = post_translate(port_, {{"text", {"a b c"}}});
  EXPECT_EQ(ok["translations"].size(), 1u);
  EXPECT_FALSE(server->wait_exit(std::chrono::milliseconds(0)));
  json stats = json::parse(client(port_)->Get("/health")->body)["stats"];
  EXPECT_EQ(stats["requests"], 1);
  EXPECT_EQ(stats["sentences"], 1);
}

TEST_F(Serve, StopsOnSigtermAfterTheRequestsInFlight) {
  for (int signal : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(signal == SIGTERM ? "SIGTERM" : "SIGINT");
    // A long batch wait keeps the request in flight when the signal comes.
    auto server = start("signal" + std::to_string(signal), {"--batch-wait-ms", "3000"});
    ASSERT_GT(port_, 0);
    json answer;
    std::thread request([&] { answer = post_translate(port_, {{"text", {"a b c"}}}); });
    bool in_flight = false;
    for (auto end = Clock::now() + std::chrono::seconds(20); !in_flight && Clock::now() < end;) {
      auto health = client(port_)->Get("/health");
      in_flight = health && json::parse(health->body)["stats"]["in_flight"] == 1;
    }
    EXPECT_TRUE(in_flight);
    server->signal(signal);
    request.join();
    EXPECT_EQ(answer["translations"].size(), 1u);
    std::optional<int> code = server->wait_exit(std::chrono::seconds(15));
    ASSERT_TRUE(code) << "still running 15 s after the signal:\n" << server->output();
    EXPECT_EQ(*code, 0) << server->output();
    EXPECT_NE(server->output().find("stopped after 1 requests, 1 sentences in 1 batches"),
              std::string::npos)
        << server->output();
    EXPECT_FALSE(client(port_)->Get("/health")) << "still listening";
  }
}

// --shortlist: every batch decoded over the vocabulary shortlist, as `kiln translate --shortlist`
// decodes it; refused at start for a checkpoint without the lexical table.
TEST_F(Serve, ShortlistDecodesAsTheCliDoes) {
  auto server = start("shortlist", {"--shortlist", "3", "--batch-size", "64"});
  ASSERT_GT(port_, 0);
  EXPECT_CONTAINS(read_file(*dir_ / "shortlist.log"), "; shortlist 3");
  for (int beam : {1, 3}) {
    json reply = post_translate(port_, {{"text", kSentences}, {"beam", beam}});
    std::vector<std::string> expected =
        cli_translate(kSentences, "--shortlist 3 --beam " + std::to_string(beam));
    ASSERT_EQ(expected.size(), kSentences.size());
    for (size_t i = 0; i < kSentences.size(); ++i) {
      EXPECT_EQ(reply["translations"][i][0]["text"], expected[i]) << "beam " << beam;
    }
  }
  server.reset();
  fs::path bare = *dir_ / "no-table";
  fs::remove_all(bare);
  fs::copy(seq2seq::checkpoint_folder(checkpoint()), bare, fs::copy_options::recursive);
  fs::remove(bare / seq2seq::LexicalTable::file_name);
  fs::path out = *dir_ / "no-table.txt";
  EXPECT_EQ(
      testing::run_kiln("serve --checkpoint " + bare.string() + " --port 0 --shortlist 3", out), 1);
  EXPECT_CONTAINS(read_file(out), "kiln shortlist --checkpoint");
  EXPECT_NE(testing::run_kiln("serve --checkpoint " + checkpoint() + " --shortlist 0", out), 0);
  EXPECT_CONTAINS(read_file(out), "--shortlist");
}

TEST_F(Serve, BadFlagsAndCheckpointsAreErrors) {
  fs::path out = *dir_ / "flags.txt";
  EXPECT_NE(testing::run_kiln("serve --checkpoint " + checkpoint() + " --port 70000", out), 0);
  EXPECT_NE(read_file(out).find("--port"), std::string::npos) << read_file(out);
  EXPECT_NE(testing::run_kiln("serve --checkpoint " + checkpoint() + " --batch-size 0", out), 0);
  EXPECT_NE(read_file(out).find("--batch-size"), std::string::npos) << read_file(out);
  EXPECT_EQ(testing::run_kiln("serve --checkpoint " + (*dir_ / "none").string() + " --port 0", out),
            1);
  EXPECT_NE(read_file(out).find("none"), std::string::npos) << read_file(out);
}

// The batcher alone, with a translate function that records its batches: a request larger than
// a batch is split, results go back to their own requests, and a failing sentence fails only its
// own request, with the function's message, even when batched with another request.
TEST(ServeBatcher, SplitsRequestsAndIsolatesFailures) {
  std::mutex mutex;
  std::vector<size_t> batch_sizes;
  auto fake = [&](const std::vector<std::string>& sentences, const seq2seq::DecodeSettings& s) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      batch_sizes.push_back(sentences.size());
    }
    seq2seq::Translations out;
    for (const std::string& sentence : sentences) {
      KILN_CHECK(sentence != "fail", "cannot translate 'fail'");
      out.push_back({{sentence + "!", static_cast<double>(s.beam)}});
    }
    return out;
  };
  seq2seq::Batcher batcher(fake, 3, std::chrono::milliseconds(0));
  seq2seq::Translations r = batcher.translate({"a", "b", "c", "d", "e", "f", "g"}, {2, 1, 1.0});
  ASSERT_EQ(r.size(), 7u);
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i][0].text, std::string(1, static_cast<char>('a' + i)) + "!");
    EXPECT_EQ(r[i][0].score, 2.0);
  }
  EXPECT_EQ(batch_sizes, (std::vector<size_t>{3, 3, 1}));
  EXPECT_TRUE(batcher.translate({}, {}).empty());
  try {
    batcher.translate({"x", "fail"}, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot translate 'fail'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(batcher.translate({"y"}, {})[0][0].text, "y!");  // the worker lives on
  seq2seq::BatcherStats stats = batcher.stats();
  EXPECT_EQ(stats.requests, 4);
  EXPECT_EQ(stats.sentences, 8);  // 7 + 1: the failed request's sentences are not counted
  EXPECT_EQ(stats.batches, 5);
  EXPECT_EQ(stats.largest_batch, 3);
  batcher.stop();
  EXPECT_THROW(batcher.translate({"z"}, {}), Error);

  // Batches of 2 and no time limit: the two requests are translated together, then, the batch
  // having failed, one by one.
  batch_sizes.clear();
  seq2seq::Batcher together(fake, 2, std::chrono::hours(1));
  std::string good, bad;
  std::thread first([&] { good = together.translate({"ok"}, {})[0][0].text; });
  std::thread second([&] {
    try {
      together.translate({"fail"}, {});
    } catch (const Error& e) {
      bad = e.what();
    }
  });
  first.join();
  second.join();
  EXPECT_EQ(good, "ok!");
  EXPECT_NE(bad.find("cannot translate 'fail'"), std::string::npos) << bad;
  EXPECT_EQ(batch_sizes, (std::vector<size_t>{2, 1, 1}));
  EXPECT_EQ(together.stats().batches, 3);
  EXPECT_EQ(together.stats().sentences, 1);
}

}  // namespace
}  // namespace kiln
