// The run folder (--out) under crashes and concurrent runs, through the kiln binary:
//  - crash consistency: a short training is killed (SIGKILL, by core's test hook
//    KILN_CRASH_AT_DURABLE_STEP) at every durable step of the run in turn; after each kill the
//    checkpoints that existed load, --resume continues, and the resumed losses equal an
//    uninterrupted run's bit for bit (CPU). Once with RENAME_EXCHANGE, once for two saves with the
//    two-rename fallback (KILN_DURABLE_NO_EXCHANGE=1).
//  - one writer: a second run on the same --out fails at once naming the folder and the holder's
//    pid, and the first run's checkpoints stay intact.
//  - the folder's other rules: a file as --out, a non-empty --out, --overwrite, nothing to train.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "cli_util.h"
#include "core/durable_file.h"
#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/translator.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::temp_dir;
using Env = std::vector<std::pair<std::string, std::string>>;

// The kiln binary with `args`, stdout and stderr into `log`, `env` added to the environment; with
// `ranks` > 0, as that many ranks under mpirun (KILN_MPIRUN_PATH, which must not be empty).
pid_t spawn_kiln(const std::vector<std::string>& args, const std::string& log, const Env& env,
                 int ranks = 0) {
  const char* override_path = std::getenv("KILN_CLI");
  std::vector<std::string> command;
  if (ranks > 0) {
    command = {KILN_MPIRUN_PATH, "--allow-run-as-root", "--oversubscribe", "-np",
               std::to_string(ranks)};
  }
  command.push_back(override_path ? override_path : KILN_CLI_PATH);
  command.insert(command.end(), args.begin(), args.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& arg : command) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

struct Exit {
  bool killed = false;  // by SIGKILL
  int code = -1;
};

Exit wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  Exit e;
  e.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  if (WIFEXITED(status)) e.code = WEXITSTATUS(status);
  return e;
}

Exit run_kiln(const std::vector<std::string>& args, const std::string& log, const Env& env = {},
              int ranks = 0) {
  return wait_for(spawn_kiln(args, log, env, ranks));
}

// A tiny run: 60 generated pairs, a 2-layer GRU of 8 units with dropout (so resume must restore
// the random generator too), a few epochs; well under a second.
std::vector<std::string> tiny_train(const fs::path& out, int epochs) {
  return {"train",    "--task",
          "reverse",  "--task-size",
          "60",       "--seed",
          "3",        "--valid-pairs",
          "8",        "--batch",
          "16",       "--hidden",
          "8",        "--embed",
          "4",        "--layers",
          "2",        "--dropout",
          "0.1",      "--attention",
          "bahdanau", "--bleu-sentences",
          "4",        "--quiet",
          "--epochs", std::to_string(epochs),
          "--out",    out.string()};
}

// metrics.jsonl as "epoch train_loss valid_loss" lines, the numbers as written (round-trip
// precision, so equal text is equal bits).
std::vector<std::string> losses(const fs::path& metrics) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(metrics));
  auto field = [](const std::string& line, const std::string& name) {
    size_t at = line.find("\"" + name + "\":");
    if (at == std::string::npos) return std::string("?");
    at += name.size() + 3;
    return line.substr(at, line.find_first_of(",}", at) - at);
  };
  for (std::string line; std::getline(in, line);) {
    lines.push_back(field(line, "epoch") + " " + field(line, "train_loss") + " " +
                    field(line, "valid_loss"));
  }
  return lines;
}

// The epoch of the checkpoint `dir`, after loading all of it as translate and resume do.
int64_t load_checkpoint(const fs::path& dir) {
  seq2seq::Translator::load(dir.string());
  std::string folder = seq2seq::checkpoint_folder(dir.string());
  safetensors::load(folder + "/optimizer.safetensors");
  return seq2seq::load_train_state(folder).epoch;
}

// One durable step of a run, from KILN_DURABLE_STEP_LOG: "N what path".
struct Step {
  std::string what, path;
};

std::vector<Step> read_steps(const fs::path& log) {
  std::vector<Step> steps;
  std::istringstream in(read_file(log));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string n;
    Step s;
    words >> n >> s.what >> s.path;
    steps.push_back(s);
  }
  return steps;
}

// The epoch of checkpoint `dir` a reader sees after the first `done` steps: the number of swaps
// that put a new `dir` in place. In the two-rename fallback, moving the old folder aside already
// commits (readers take the complete `<dir>.tmp`).
int64_t committed_epoch(const std::vector<Step>& steps, size_t done, const std::string& dir) {
  int64_t epoch = 0;
  for (size_t i = 0; i < done; ++i) {
    const Step& s = steps[i];
    bool second_rename =
        i > 0 && steps[i - 1].what == "rename" && steps[i - 1].path == dir + ".old";
    if ((s.what == "exchange" && s.path == dir) || (s.what == "rename" && s.path == dir + ".old") ||
        (s.what == "rename" && s.path == dir && !second_rename)) {
      ++epoch;
    }
  }
  return epoch;
}

// A step of a folder swap itself (the staged folder's fsync, renames, the exchange, the fsync of
// the run folder, the removal of the old one), not of a file inside a checkpoint.
bool swap_step(const Step& s, const std::string& out) {
  if (s.path == out) return true;
  for (const char* name : {"/last", "/best"}) {
    for (const char* suffix : {"", ".tmp", ".old"}) {
      if (s.path == out + name + suffix) return true;
    }
  }
  return false;
}

// Kills a run at each of its durable steps in turn (with `swaps_after_first_epoch`, only at the
// folder swaps after epoch 1, the saves over existing folders), then checks what is left and
// continues it.
// Under the sanitizers (make test-asan) the run is killed at every fourth durable step: each kill
// and resume costs a second there, what the sanitizers watch (the recovery and resume code) runs
// the same at each step, and the release suite kills at every one.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kKillEvery = 4;
#else
constexpr int kKillEvery = 1;
#endif

void crash_at_each_step(const std::string& name, const Env& env, int epochs,
                        bool swaps_after_first_epoch) {
  fs::path dir = temp_dir("run_folder_" + name), out = dir / "out", log = dir / "log.txt";
  std::string out_s = out.string();
  // The uninterrupted run: its losses, its steps, and which epochs best/ holds.
  ASSERT_EQ(run_kiln(tiny_train(out, epochs), log.string(),
                     [&] {
                       Env e = env;
                       e.push_back({"KILN_DURABLE_STEP_LOG", (dir / "steps.txt").string()});
                       return e;
                     }())
                .code,
            0)
      << read_file(log);
  const std::vector<std::string> reference = losses(out / "metrics.jsonl");
  ASSERT_EQ(reference.size(), static_cast<size_t>(epochs));
  const std::vector<Step> steps = read_steps(dir / "steps.txt");
  ASSERT_GT(steps.size(), 20u);
  // The steps of the best/ saves tell which epoch best/ holds after each.
  std::vector<int64_t> best_epochs;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (committed_epoch(steps, i + 1, out_s + "/best") > committed_epoch(steps, i, out_s + "/best"))
      best_epochs.push_back(committed_epoch(steps, i + 1, out_s + "/last") + 1);
  }
  int checked = 0, candidates = 0;
  for (size_t n = 1; n <= steps.size(); ++n) {
    if (swaps_after_first_epoch &&
        (committed_epoch(steps, n - 1, out_s + "/last") == 0 || !swap_step(steps[n - 1], out_s))) {
      continue;
    }
    if (candidates++ % kKillEvery != 0) continue;
    SCOPED_TRACE("killed before step " + std::to_string(n) + ": " + steps[n - 1].what + " " +
                 steps[n - 1].path);
    fs::remove_all(out);
    Env crash = env;
    crash.push_back({"KILN_CRASH_AT_DURABLE_STEP", std::to_string(n)});
    Exit killed = run_kiln(tiny_train(out, epochs), log.string(), crash);
    ASSERT_TRUE(killed.killed) << "exit " << killed.code << "\n" << read_file(log);
    int64_t last = committed_epoch(steps, n - 1, out_s + "/last");
    int64_t best = committed_epoch(steps, n - 1, out_s + "/best");
    if (last > 0) {
      EXPECT_EQ(load_checkpoint(out / "last"), last);
    }
    if (best > 0) {
      EXPECT_EQ(load_checkpoint(out / "best"), best_epochs.at(best - 1));
    }
    // Continue: from last/ when there is one, else the fresh run again over what was left.
    std::vector<std::string> again = tiny_train(out, epochs);
    if (last > 0) {
      again.insert(again.end(), {"--resume", out_s + "/last"});
    } else {
      again.push_back("--overwrite");
    }
    Exit resumed = run_kiln(again, log.string(), env);
    ASSERT_EQ(resumed.code, 0) << read_file(log);
    EXPECT_EQ(losses(out / "metrics.jsonl"), reference);  // each epoch once, same losses
    EXPECT_EQ(load_checkpoint(out / "last"), epochs);
    EXPECT_EQ(load_checkpoint(out / "best"), best_epochs.back());
    for (const auto& entry : fs::directory_iterator(out)) {  // no leftovers
      std::string file = entry.path().filename().string();
      EXPECT_EQ(file.find(".tmp"), std::string::npos) << file;
      EXPECT_EQ(file.find(".old"), std::string::npos) << file;
    }
    ++checked;
    if (::testing::Test::HasFailure()) return;  // one kill's report is enough
  }
  std::printf("%s: killed and resumed at %d of %zu durable steps\n", name.c_str(), checked,
              steps.size());
  fs::remove_all(dir);
}

TEST(RunFolder, CrashAtEveryDurableStepThenResumeExactly) {
  crash_at_each_step("crash", {}, 2, false);
}

// Where the file system refuses RENAME_EXCHANGE: the two-rename swap, killed at each step of the
// saves over an existing last/ and best/.
TEST(RunFolder, CrashAtEveryStepOfTheFallbackSwap) {
  crash_at_each_step("fallback", {{"KILN_DURABLE_NO_EXCHANGE", "1"}}, 2, true);
}

// The states a crash can leave, by hand: readers take the newest complete folder and never a
// leftover; the writer's recovery finishes the swap and removes the rest.
TEST(RunFolder, ReadersAndRecoveryAfterAnInterruptedSwap) {
  fs::path dir = temp_dir("run_folder_states");
  std::string ck = (dir / "ck").string();
  auto make = [](const std::string& folder, const std::string& text) {
    fs::create_directories(folder);
    std::ofstream(folder + "/state.json") << text;
  };
  make(ck + ".old", "old");  // the fallback window: ck moved aside, ck.tmp complete and newer
  make(ck + ".tmp", "new");
  EXPECT_EQ(durable_folder_current(ck), ck + ".tmp");
  durable_folder_recover(ck, "test");
  EXPECT_EQ(read_file(ck + "/state.json"), "new");
  EXPECT_FALSE(fs::exists(ck + ".old"));
  EXPECT_FALSE(fs::exists(ck + ".tmp"));
  make(ck + ".tmp", "half");  // a staged folder beside a complete one: never read, then removed
  EXPECT_EQ(durable_folder_current(ck), ck);
  durable_folder_recover(ck, "test");
  EXPECT_FALSE(fs::exists(ck + ".tmp"));
  fs::remove_all(ck);
  make(ck + ".tmp", "first");  // the first save, cut short: there is no checkpoint yet
  EXPECT_EQ(durable_folder_current(ck), ck);
  durable_folder_recover(ck, "test");
  EXPECT_FALSE(fs::exists(ck + ".tmp"));
  EXPECT_FALSE(fs::exists(ck));
  // The swap itself replaces the folder whole.
  durable_write_folder(
      ck, [](const std::string& staged) { durable_write(staged + "/a", "1", "test"); }, "test");
  durable_write_folder(
      ck, [](const std::string& staged) { durable_write(staged + "/b", "2", "test"); }, "test");
  EXPECT_FALSE(fs::exists(ck + "/a"));
  EXPECT_EQ(read_file(ck + "/b"), "2");
  fs::remove_all(dir);
}

// Defect 4 of issue 10: two runs on one --out deleted each other's checkpoints.
TEST(RunFolder, SecondRunOnTheSameOutFailsAtOnce) {
  fs::path dir = temp_dir("run_folder_concurrent"), out = dir / "out";
  std::vector<std::string> long_run = tiny_train(out, 12);
  long_run[4] = "300";  // --task-size: a run of a few seconds
  pid_t first = spawn_kiln(long_run, (dir / "first.txt").string(), {});
  std::string pid = std::to_string(first);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto started = [&] {  // holds the lock and has saved its first epoch
    return read_file(out / ".lock").find(pid) != std::string::npos &&
           fs::exists(out / "last" / "state.json");
  };
  // The first run is paused (SIGSTOP) once it holds the lock, so that it is still running however
  // fast this machine trains: a CI runner with many cores once finished all 12 epochs before the
  // second run started. A stopped process keeps its lock and its pid stays alive.
  bool paused = false;
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(kill(first, SIGSTOP), 0);
    if (started()) {
      paused = true;
      break;
    }
    ASSERT_EQ(kill(first, SIGCONT), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(paused) << read_file(dir / "first.txt");
  // The same run again, with --overwrite, and a resume: each refused at once. (Had the first run
  // ended already, the lock would be free and the message another.)
  for (const char* extra : {"", "--overwrite", "--resume"}) {
    SCOPED_TRACE(extra);
    std::vector<std::string> second = tiny_train(out, 2);
    second[4] = "300";  // --task-size as the first run's: --resume refuses another
    if (std::string(extra) == "--overwrite") second.push_back(extra);
    if (std::string(extra) == "--resume")
      second.insert(second.end(), {extra, out.string() + "/last"});
    auto start = std::chrono::steady_clock::now();
    std::string log = (dir / "second.txt").string();
    Exit e = run_kiln(second, log);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(e.code, 1) << read_file(log);
    EXPECT_CONTAINS(read_file(log), "'" + out.string() + "' is in use by another run (pid " + pid);
    EXPECT_EQ(read_file(log).find("data:"), std::string::npos)
        << read_file(log);  // before any data
    EXPECT_LT(seconds, 2.0);
  }
  ASSERT_EQ(kill(first, SIGCONT), 0);
  Exit done = wait_for(first);
  ASSERT_EQ(done.code, 0) << read_file(dir / "first.txt");
  EXPECT_EQ(load_checkpoint(out / "last"), 12);
  EXPECT_GT(load_checkpoint(out / "best"), 0);
  std::vector<std::string> lines = losses(out / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 12u);
  for (size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(lines[i].substr(0, lines[i].find(' ')), std::to_string(i + 1));
  fs::remove_all(dir);
}

// Defect 2: a file as --out, or a path under a file, was an uncaught filesystem_error (abort)
// after the data had been loaded.
TEST(RunFolder, OutThatIsAFileIsNamedBeforeAnyData) {
  fs::path dir = temp_dir("run_folder_file");
  std::ofstream(dir / "f") << "x";
  std::string log = (dir / "log.txt").string();
  for (fs::path out : {dir / "f", dir / "f" / "sub"}) {
    Exit e = run_kiln(tiny_train(out, 1), log);
    EXPECT_EQ(e.code, 1) << read_file(log);
    EXPECT_CONTAINS(read_file(log), "'" + (dir / "f").string() + "' is a file, not a folder");
    EXPECT_EQ(read_file(log).find("data:"), std::string::npos) << read_file(log);
  }
  fs::remove_all(dir);
}

// Defect 5: a new run into an old run's folder appended to its metrics.jsonl and replaced its
// best/ even when worse. Now it is refused, unless --overwrite, which starts the folder afresh.
TEST(RunFolder, FreshRunRefusesAnOldRunUnlessOverwrite) {
  fs::path dir = temp_dir("run_folder_fresh"), out = dir / "out";
  std::string log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln(tiny_train(out, 2), log).code, 0) << read_file(log);
  std::string metrics = read_file(out / "metrics.jsonl"),
              model = read_file(out / "best/model.safetensors");
  Exit refused = run_kiln(tiny_train(out, 1), log);
  EXPECT_EQ(refused.code, 1);
  EXPECT_CONTAINS(read_file(log),
                  "the output folder '" + out.string() + "' is not empty (best, last");
  EXPECT_CONTAINS(read_file(log), "--overwrite");
  EXPECT_EQ(read_file(out / "metrics.jsonl"), metrics);
  EXPECT_EQ(read_file(out / "best/model.safetensors"), model);
  ASSERT_EQ(run_kiln(
                [&] {
                  std::vector<std::string> args = tiny_train(out, 1);
                  args.push_back("--overwrite");
                  return args;
                }(),
                log)
                .code,
            0)
      << read_file(log);
  EXPECT_EQ(losses(out / "metrics.jsonl").size(), 1u);
  EXPECT_EQ(load_checkpoint(out / "best"), 1);
  fs::remove_all(dir);
}

// Defect 5, second half: a run killed after writing an epoch's metrics but before its last/ was
// resumed into the same folder and wrote that epoch twice.
TEST(RunFolder, ResumeAfterAKillWritesEachEpochOnce) {
  fs::path dir = temp_dir("run_folder_twice"), out = dir / "out";
  std::string log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln(tiny_train(out, 1), log).code, 0) << read_file(log);
  // Epoch 2's metrics line (3 steps: fsync, rename, fsync of the folder) is written, then kill.
  std::vector<std::string> more = tiny_train(out, 2);
  more.insert(more.end(), {"--resume", out.string() + "/last"});
  ASSERT_TRUE(run_kiln(more, log, {{"KILN_CRASH_AT_DURABLE_STEP", "4"}}).killed) << read_file(log);
  ASSERT_EQ(losses(out / "metrics.jsonl").size(), 2u);
  ASSERT_EQ(run_kiln(more, log).code, 0) << read_file(log);
  std::vector<std::string> lines = losses(out / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].substr(0, 2), "1 ");
  EXPECT_EQ(lines[1].substr(0, 2), "2 ");
  fs::remove_all(dir);
}

// Defect 6: resuming a run that is already complete said "cannot open r12/last/config.json".
TEST(RunFolder, NothingToTrainSaysTheRunIsComplete) {
  fs::path dir = temp_dir("run_folder_complete"), out = dir / "out";
  std::string log = (dir / "log.txt").string();
  ASSERT_EQ(run_kiln(tiny_train(out, 2), log).code, 0) << read_file(log);
  for (const char* epochs : {"2", "0"}) {
    std::vector<std::string> args = tiny_train(dir / "r12", 2);
    args[args.size() - 3] = epochs;
    args.insert(args.end(), {"--resume", (out / "best").string()});
    EXPECT_EQ(run_kiln(args, log).code, 0) << read_file(log);
    EXPECT_CONTAINS(read_file(log), "is already complete at epoch 2; give --epochs above 2");
    EXPECT_EQ(read_file(log).find("cannot open"), std::string::npos) << read_file(log);
    EXPECT_FALSE(fs::exists(dir / "r12"));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln

// ---- Issue 13: `kiln train` under mpirun ------------------------------------------------------

namespace kiln {
namespace {

// Under the sanitizers, Open MPI's own leaks at exit are suppressed, as for kiln_dist_tests.
const Env kMpiEnv = {{"OMPI_MCA_mca_base_component_disable_dlclose", "1"},
                     {"LSAN_OPTIONS", std::string("suppressions=") + KILN_MPI_LSAN_SUPPRESSIONS +
                                          ":fast_unwind_on_malloc=0"},
                     {"KILN_DIST_TIMEOUT", "60"}};

// A small data-parallel run: attention, padding (sentences of many lengths), label smoothing,
// gradient accumulation over 2 batches, clipping and Adam; one thread per rank, so that reruns
// are bit for bit.
std::vector<std::string> parallel_train(const fs::path& out, double dropout) {
  std::vector<std::string> args = tiny_train(out, 3);
  auto set = [&](const std::string& flag, const std::string& value) {
    *(std::find(args.begin(), args.end(), flag) + 1) = value;
  };
  set("--dropout", std::to_string(dropout));
  set("--task-size", "120");
  args.insert(args.end(), {"--label-smoothing", "0.1", "--accum-steps", "2", "--clip", "1",
                           "--save-every", "2", "--threads", "1"});
  return args;
}

// The relative differences of two metrics files' losses, line by line (same epochs required).
double largest_loss_difference(const std::vector<std::string>& a,
                               const std::vector<std::string>& b) {
  EXPECT_EQ(a.size(), b.size());
  double largest = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    std::istringstream x(a[i]), y(b[i]);
    int64_t epoch_x = 0, epoch_y = 0;
    x >> epoch_x;
    y >> epoch_y;
    EXPECT_EQ(epoch_x, epoch_y);
    for (int k = 0; k < 2; ++k) {
      double u = 0, v = 0;
      x >> u;
      y >> v;
      largest = std::max(largest, std::abs(u - v) / std::max(std::abs(v), 1e-12));
    }
  }
  return largest;
}

#define KILN_NEEDS_MPIRUN()                                                        \
  if (std::string(KILN_MPIRUN_PATH).empty())                                       \
  GTEST_SKIP() << "no mpirun, or kiln built without MPI (scripts/install-deps.sh " \
                  "installs libopenmpi-dev and openmpi-bin)"

// Two ranks compute what one rank computes on the global batch: the same losses, one log.
TEST(DataParallelTrain, TwoRanksTrainAsOneRankOnTheGlobalBatch) {
  KILN_NEEDS_MPIRUN();
  fs::path dir = temp_dir("dp_train_equal");
  std::string log1 = (dir / "one.txt").string(), log2 = (dir / "two.txt").string();
  ASSERT_EQ(run_kiln(parallel_train(dir / "one", 0), log1, kMpiEnv).code, 0) << read_file(log1);
  ASSERT_EQ(run_kiln(parallel_train(dir / "two", 0), log2, kMpiEnv, 2).code, 0) << read_file(log2);
  const std::vector<std::string> one = losses(dir / "one" / "metrics.jsonl");
  ASSERT_EQ(one.size(), 3u);
  double largest = largest_loss_difference(losses(dir / "two" / "metrics.jsonl"), one);
  std::printf("2 ranks vs 1 rank, 3 epochs: largest relative loss difference %.3g\n", largest);
  EXPECT_LT(largest, 1e-5);
  const std::string two = read_file(log2);
  EXPECT_CONTAINS(two, "data parallel: 2 ranks (MPI)");
  // Rank 0 alone logs and writes: one epoch line each, no leftovers of the data hand-over.
  for (const char* line : {"epoch 1: ", "epoch 3: ", "data: ", "checkpoints: "}) {
    size_t first = two.find(line);
    EXPECT_NE(first, std::string::npos) << line << "\n" << two;
    EXPECT_EQ(two.find(line, first + 1), std::string::npos) << line << "\n" << two;
  }
  EXPECT_FALSE(fs::exists(dir / "two" / ".prepared"));
  EXPECT_EQ(load_checkpoint(dir / "two" / "last"), 3);
  fs::remove_all(dir);
}

// Killed in the middle (rank 0 dies at a durable step; mpirun takes rank 1 down), then resumed
// with 2 ranks (dropout on: each rank's stream is keyed by seed, rank and step, so the losses are
// the uninterrupted run's bit for bit) and with 1 rank (dropout off, so that one rank computes the
// same thing: within 1e-5).
TEST(DataParallelTrain, KilledThenResumedWithTwoOrOneRanks) {
  KILN_NEEDS_MPIRUN();
  fs::path dir = temp_dir("dp_train_resume");
  std::string log = (dir / "log.txt").string();
  for (int resume_ranks : {2, 1}) {
    SCOPED_TRACE("resumed with " + std::to_string(resume_ranks) + " rank(s)");
    const double dropout = resume_ranks == 2 ? 0.2 : 0.0;
    fs::path whole = dir / ("whole" + std::to_string(resume_ranks));
    fs::path cut = dir / ("cut" + std::to_string(resume_ranks));
    Env env = kMpiEnv;
    env.push_back({"KILN_DURABLE_STEP_LOG", (dir / "steps.txt").string()});
    fs::remove(dir / "steps.txt");
    ASSERT_EQ(run_kiln(parallel_train(whole, dropout), log, env, 2).code, 0) << read_file(log);
    const std::vector<std::string> reference = losses(whole / "metrics.jsonl");
    ASSERT_EQ(reference.size(), 3u);
    const std::vector<Step> steps = read_steps(dir / "steps.txt");
    // Past the middle of the run: some checkpoint of epoch 2 is committed by then.
    const size_t crash_at = steps.size() * 3 / 5;
    env = kMpiEnv;
    env.push_back({"KILN_CRASH_AT_DURABLE_STEP", std::to_string(crash_at)});
    Exit killed = run_kiln(parallel_train(cut, dropout), log, env, 2);
    ASSERT_NE(killed.code, 0) << read_file(log);
    const int64_t saved_steps =
        seq2seq::load_train_state(seq2seq::checkpoint_folder((cut / "last").string())).steps;
    ASSERT_GT(saved_steps, 0);
    std::vector<std::string> again = parallel_train(cut, dropout);
    again.insert(again.end(), {"--resume", (cut / "last").string()});
    Exit resumed = run_kiln(again, log, kMpiEnv, resume_ranks == 2 ? 2 : 0);
    ASSERT_EQ(resumed.code, 0) << read_file(log);
    EXPECT_CONTAINS(read_file(log), "resuming from");
    const std::vector<std::string> continued = losses(cut / "metrics.jsonl");
    if (resume_ranks == 2) {
      EXPECT_EQ(continued, reference);
    } else {
      double largest = largest_loss_difference(continued, reference);
      std::printf(
          "killed at step %ld, resumed with 1 rank: largest relative loss difference %.3g\n",
          static_cast<long>(saved_steps), largest);
      EXPECT_LT(largest, 1e-5);
    }
    EXPECT_EQ(load_checkpoint(cut / "last"), 3);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln
