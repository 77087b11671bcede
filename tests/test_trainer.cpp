// The training loop in steps (trainer.h), mostly through the kiln binary on a tiny generated task:
//  - a run killed right after each save of last/ (inside epochs and at their ends) and resumed
//    writes the same metrics.jsonl, bit for bit on the CPU, as an uninterrupted run;
//  - step folders, --max-steps and --max-time, early stopping, progress lines into a file,
//    --resume with changed flags (applied or refused), --epochs 0, loss.svg across a resume;
//  - gradient accumulation: 4 batches summed equal one batch of the 4 together; resume inside an
//    epoch with accumulation, --ema and --batch-tokens.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "cli_util.h"
#include "core/profiler.h"
#include "core/safetensors.h"
#include "models/data/batching.h"
#include "models/data/vocab.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/report.h"
#include "models/seq2seq/trainer.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::temp_dir;

// The kiln binary with `args`; output into `log`; `env` ("NAME=value") set for it alone.
int kiln(const std::string& args, const fs::path& log, const std::string& env = "") {
  std::string name = env.substr(0, env.find('='));
  if (!env.empty()) ::setenv(name.c_str(), env.substr(env.find('=') + 1).c_str(), 1);
  int code = testing::run_kiln(args, log.string());
  if (!env.empty()) ::unsetenv(name.c_str());
  return code;
}

// 52 training pairs in batches of 12: 5 batches an epoch; dropout, so resume must restore the
// random generator. Validation every 3 steps and at each epoch's end, last/ saved every 2 steps.
std::string tiny(const fs::path& out, int epochs) {
  return "train --task reverse --task-size 60 --seed 3 --valid-pairs 8 --batch 12 --hidden 8 "
         "--embed 4 --layers 2 --dropout 0.1 --attention bahdanau --quiet --save-every 2 "
         "--valid-every 3 --keep-checkpoints 2 --epochs " +
         std::to_string(epochs) + " --out " + out.string();
}

// `args` with the option `flag` set to `value`: its old value, if any, removed.
std::string with(std::string args, const std::string& flag, const std::string& value) {
  size_t at = args.find(" " + flag + " ");
  if (at != std::string::npos) {
    size_t end = args.find(' ', at + flag.size() + 2);  // after the old value
    args.erase(at, (end == std::string::npos ? args.size() : end) - at);
  }
  return args + " " + flag + " " + value;
}

// Everything of metrics.jsonl but the times, which differ between runs.
std::vector<std::string> metrics_without_times(const fs::path& file) {
  std::vector<std::string> lines;
  for (const seq2seq::EpochMetrics& m : seq2seq::read_metrics(file.string())) {
    std::ostringstream line;
    line.precision(17);
    line << m.epoch << " " << m.steps << " " << m.train_loss << " " << m.validated << " "
         << m.valid_loss << " " << m.valid_bleu << " " << m.lr << " " << m.grad_norm;
    lines.push_back(line.str());
  }
  return lines;
}

seq2seq::TrainState state_of(const fs::path& checkpoint) {
  return seq2seq::load_train_state(seq2seq::checkpoint_folder(checkpoint.string()));
}

TEST(Trainer, KilledAfterAnySaveResumesWithTheSameLosses) {
  fs::path dir = temp_dir("trainer_kill"), out = dir / "out", log = dir / "log.txt";
  ASSERT_EQ(kiln(tiny(out, 2), log, "KILN_DURABLE_STEP_LOG=" + (dir / "steps.txt").string()), 0)
      << read_file(log);
  const std::vector<std::string> reference = metrics_without_times(out / "metrics.jsonl");
  // Validations at steps 3, 6, 9 and the epoch ends 5 and 10.
  ASSERT_EQ(reference.size(), 5u);
  std::vector<int64_t> steps;
  for (const seq2seq::EpochMetrics& m : seq2seq::read_metrics((out / "metrics.jsonl").string()))
    steps.push_back(m.steps);
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 5, 6, 9, 10}));
  EXPECT_EQ(state_of(out / "last").steps, 10);
  EXPECT_EQ(state_of(out / "last").epoch_batches, 0);
  EXPECT_TRUE(fs::exists(out / "step-8") && fs::exists(out / "step-10"));
  EXPECT_FALSE(fs::exists(out / "step-6"));  // beyond --keep-checkpoints 2

  // Kill right after each commit of last/ (the durable step after its folder exchange).
  std::vector<size_t> commits;
  std::istringstream step_log(read_file(dir / "steps.txt"));
  size_t n = 0;
  for (std::string line; std::getline(step_log, line);) {
    ++n;
    // The swap that puts last/ in place: an exchange, or the rename of the first one.
    for (const char* what : {" exchange ", " rename "})
      if (line.substr(line.find(' ')) == what + (out / "last").string()) commits.push_back(n);
  }
  ASSERT_EQ(commits.size(), 6u);  // steps 2, 4, 5 (epoch end), 6, 8, 10 (epoch end)
  commits.pop_back();             // after the last one there is nothing left to resume
  for (size_t commit : commits) {
    SCOPED_TRACE("killed after durable step " + std::to_string(commit));
    fs::remove_all(out);
    int code = kiln(tiny(out, 2), log, "KILN_CRASH_AT_DURABLE_STEP=" + std::to_string(commit + 1));
    EXPECT_TRUE(code == -1 || code == 128 + 9) << code << "\n" << read_file(log);  // SIGKILL
    int64_t at = state_of(out / "last").steps;
    ASSERT_EQ(kiln(tiny(out, 2) + " --resume " + (out / "last").string(), log), 0)
        << read_file(log);
    EXPECT_CONTAINS(read_file(log),
                    "resuming from " + (out / "last").string() + " at step " + std::to_string(at));
    EXPECT_EQ(metrics_without_times(out / "metrics.jsonl"), reference);
    EXPECT_EQ(state_of(out / "last").steps, 10);
    EXPECT_TRUE(fs::exists(out / "step-8") && fs::exists(out / "step-10"));
    if (::testing::Test::HasFailure()) break;
  }
  fs::remove_all(dir);
}

TEST(Trainer, MaxStepsStopsInsideAnEpochAndResumeGoesOn) {
  fs::path dir = temp_dir("trainer_max_steps"), out = dir / "out", log = dir / "log.txt";
  ASSERT_EQ(kiln(with(tiny(out, 2), "--max-steps", "7"), log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "stopping at step 7 (epoch 2, batch 2/5): --max-steps 7 reached");
  EXPECT_EQ(state_of(out / "last").steps, 7);
  EXPECT_EQ(state_of(out / "last").epoch, 1);
  EXPECT_EQ(state_of(out / "last").epoch_batches, 2);
  ASSERT_TRUE(fs::exists(out / "step-7"));
  // The same limit again: nothing to do. Without it (0: none) the run goes on to its end.
  std::string resume = " --resume " + (out / "last").string();
  ASSERT_EQ(kiln(with(tiny(out, 2), "--max-steps", "7") + resume, log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "stopped at step 7, its --max-steps; give a larger --max-steps");
  ASSERT_EQ(kiln(with(tiny(out, 2), "--max-steps", "0") + resume, log), 0) << read_file(log);
  EXPECT_EQ(state_of(out / "last").steps, 10);

  // --max-time: a limit every step exceeds stops after the first, saved.
  fs::path timed = dir / "timed";
  ASSERT_EQ(kiln(tiny(timed, 2) + " --max-time 0.000001s", log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "stopping at step 1 (epoch 1, batch 1/5): --max-time");
  EXPECT_EQ(state_of(timed / "last").steps, 1);
  fs::remove_all(dir);
}

// With --accum-steps 2 an epoch of 5 batches is 3 steps (2, 2, 1 batches); a stop inside it and
// a resume give the uninterrupted run's metrics.
TEST(Trainer, AccumulatedStepsResumeInsideAnEpoch) {
  fs::path dir = temp_dir("trainer_accum"), log = dir / "log.txt";
  std::string args = with(with(tiny(dir / "full", 2), "--accum-steps", "2"), "--valid-every", "2");
  ASSERT_EQ(kiln(args, log), 0) << read_file(log);
  EXPECT_EQ(state_of(dir / "full" / "last").steps, 6);
  std::vector<std::string> reference = metrics_without_times(dir / "full" / "metrics.jsonl");
  ASSERT_EQ(reference.size(), 4u);  // steps 2, 3 (end), 4, 6 (end)

  fs::path out = dir / "split";
  args = with(with(tiny(out, 2), "--accum-steps", "2"), "--valid-every", "2");
  ASSERT_EQ(kiln(with(args, "--max-steps", "4"), log), 0) << read_file(log);
  EXPECT_EQ(state_of(out / "last").epoch_batches, 2);  // epoch 2, after its first 2 batches
  ASSERT_EQ(kiln(with(args, "--max-steps", "0") + " --resume " + (out / "last").string(), log), 0)
      << read_file(log);
  EXPECT_EQ(metrics_without_times(out / "metrics.jsonl"), reference);
  fs::remove_all(dir);
}

// The same with the weight average (--ema, saved and restored with its update count) and token
// batches (--batch-tokens), stopped after step 5, inside epoch 1.
TEST(Trainer, EmaAndTokenBatchesResumeInsideAnEpoch) {
  fs::path dir = temp_dir("trainer_ema"), log = dir / "log.txt";
  auto args = [&](const fs::path& out) {
    return with(tiny(out, 2), "--keep-checkpoints", "0") + " --ema 0.9 --batch-tokens 60";
  };
  ASSERT_EQ(kiln(args(dir / "full"), log), 0) << read_file(log);
  std::vector<std::string> reference = metrics_without_times(dir / "full" / "metrics.jsonl");
  fs::path out = dir / "split";
  ASSERT_EQ(kiln(args(out) + " --max-steps 5", log), 0) << read_file(log);
  ASSERT_EQ(state_of(out / "last").epoch, 0);
  ASSERT_GT(state_of(out / "last").epoch_batches, 0);
  ASSERT_EQ(kiln(args(out) + " --max-steps 0 --resume " + (out / "last").string(), log), 0)
      << read_file(log);
  EXPECT_CONTAINS(read_file(log),
                  "resuming from " + (out / "last").string() + " at step 5, epoch 1");
  EXPECT_EQ(metrics_without_times(out / "metrics.jsonl"), reference);
  fs::remove_all(dir);
}

TEST(Trainer, DurationsOfMaxTime) {
  EXPECT_EQ(seq2seq::parse_duration("90", "--max-time"), 90);
  EXPECT_EQ(seq2seq::parse_duration("45m", "--max-time"), 2700);
  EXPECT_EQ(seq2seq::parse_duration("1h30m", "--max-time"), 5400);
  EXPECT_EQ(seq2seq::parse_duration("1m30s", "--max-time"), 90);
  EXPECT_EQ(seq2seq::parse_duration("1.5h", "--max-time"), 5400);
  for (const char* bad : {"", "h", "1x", "1h30", "-5", "1hm"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(seq2seq::parse_duration(bad, "--max-time"), Error);
  }
  fs::path dir = temp_dir("trainer_duration"), log = dir / "log.txt";
  EXPECT_EQ(kiln(tiny(dir / "out", 1) + " --max-time 1x", log), 1);
  EXPECT_CONTAINS(read_file(log), "--max-time: '1x': unknown unit 'x' (h, m or s)");
  fs::remove_all(dir);
}

TEST(Trainer, StepFlagsAreRangeChecked) {
  fs::path dir = temp_dir("trainer_flag_ranges"), log = dir / "log.txt";
  struct Bad {
    const char *flag, *value, *message;
  };
  for (const Bad& b :
       {Bad{"--accum-steps", "0", "--accum-steps: must be > 0, got '0'"},
        Bad{"--save-every", "-1", "--save-every: must be >= 0, got '-1'"},
        Bad{"--valid-every", "-3", "--valid-every: must be >= 0, got '-3'"},
        Bad{"--keep-checkpoints", "x", "--keep-checkpoints: must be >= 0, got 'x'"},
        Bad{"--max-steps", "-1", "--max-steps: must be >= 0, got '-1'"},
        Bad{"--log-every", "0", "--log-every: must be > 0, got '0'"},
        Bad{"--patience", "-2", "--patience: must be >= 0, got '-2'"},
        Bad{"--early-stop-metric", "f1", "--early-stop-metric: f1 not in {loss,bleu}"},
        Bad{"--bleu-sentences", "-2", "--bleu-sentences: must be -1 (all) or >= 0, got '-2'"}}) {
    SCOPED_TRACE(b.flag);
    EXPECT_NE(kiln(with(tiny(dir / "out", 1), b.flag, b.value), log), 0);
    EXPECT_CONTAINS(read_file(log), b.message);
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
  fs::remove_all(dir);
}

TEST(Trainer, EarlyStoppingTriggersAndIsReported) {
  fs::path dir = temp_dir("trainer_early"), out = dir / "out", log = dir / "log.txt";
  // A model of 8 units translates nothing right in a few steps: its BLEU stays 0, so the second
  // validation is one without improvement, and --patience 1 stops the run there.
  std::string args = with(tiny(out, 20), "--valid-every", "1");
  ASSERT_EQ(kiln(args + " --patience 1 --early-stop-metric bleu", log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log),
                  "early stopping at step 2 (epoch 1): valid BLEU did not improve for 1 "
                  "validations; best/ holds step 1");
  std::vector<seq2seq::EpochMetrics> lines =
      seq2seq::read_metrics((out / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_FALSE(lines[0].early_stop);
  EXPECT_TRUE(lines[1].early_stop);
  EXPECT_EQ(state_of(out / "best").steps, 1);
  EXPECT_EQ(state_of(out / "last").steps, 2);
  std::string resume = " --resume " + (out / "last").string();
  ASSERT_EQ(kiln(args + resume, log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "stopped early at step 2 (no improvement for 1 validations)");
  // A larger patience goes on (and stops again, later).
  ASSERT_EQ(kiln(args + " --patience 3" + resume, log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "early stopping at step 4");

  // By validation loss: best/ is the step of the lowest one.
  fs::path by_loss = dir / "loss";
  ASSERT_EQ(kiln(with(tiny(by_loss, 3), "--valid-every", "1") + " --patience 2", log), 0)
      << read_file(log);
  lines = seq2seq::read_metrics((by_loss / "metrics.jsonl").string());
  const seq2seq::EpochMetrics* best = &lines[0];
  for (const seq2seq::EpochMetrics& m : lines)
    if (m.valid_loss < best->valid_loss) best = &m;
  EXPECT_EQ(state_of(by_loss / "best").steps, best->steps);
  EXPECT_EQ(state_of(by_loss / "best").valid_loss, best->valid_loss);
  fs::remove_all(dir);
}

TEST(Trainer, ProgressLinesWhenStdoutIsAFile) {
  fs::path dir = temp_dir("trainer_progress"), out = dir / "out", log = dir / "log.txt";
  std::string args = tiny(out, 2);
  args.replace(args.find(" --quiet"), 8, " --log-every 2");
  ASSERT_EQ(kiln(args, log), 0) << read_file(log);
  std::string text = read_file(log);
  EXPECT_CONTAINS(text, "epoch 1/2 batch 2/5 step 2 loss ");
  EXPECT_CONTAINS(text, "epoch 1/2 batch 4/5 step 4 loss ");
  EXPECT_CONTAINS(text, "epoch 2/2 batch 1/5 step 6 loss ");  // steps count across epochs
  EXPECT_EQ(text.find("step 3 loss"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);  // no terminal control in a file
  fs::remove_all(dir);
}

// A learning rate that blows the weights up: after the first update every gradient norm is
// non-finite, and each such step is dropped on the device (no read per step). The run goes on,
// says how many steps were skipped, and its checkpoint holds finite weights and an optimizer that
// counts the calls and the one update applied apart.
TEST(Trainer, NonFiniteStepsAreDroppedOnTheDeviceAndReported) {
  fs::path dir = temp_dir("trainer_nonfinite"), out = dir / "out", log = dir / "log.txt";
  std::string args = tiny(out, 1);
  args = with(args, "--dropout", "0");
  args.replace(args.find(" --quiet"), 8, " --log-every 2 --lr 1e25 --clip 1");
  ASSERT_EQ(kiln(args, log), 0) << read_file(log);
  std::string text = read_file(log);
  // Read at the saves (every 2 steps), the validation (step 3) and the epoch's end.
  EXPECT_CONTAINS(text, "epoch 1 steps 1-2: 1 of 2 steps skipped: non-finite gradient norm");
  EXPECT_CONTAINS(text, "epoch 1 step 3: non-finite gradient norm, step skipped");
  EXPECT_CONTAINS(text, "epoch 1 step 5: non-finite gradient norm, step skipped");
  safetensors::File model = safetensors::load((out / "last" / "model.safetensors").string());
  for (const auto& [name, weight] : model.tensors) {
    for (float value : weight.to_vector<float>()) ASSERT_TRUE(std::isfinite(value)) << name;
  }
  safetensors::File opt = safetensors::load((out / "last" / "optimizer.safetensors").string());
  EXPECT_EQ(opt.tensors.at("calls").item(), 5);
  EXPECT_EQ(opt.tensors.at("step").item(), 1);
  fs::remove_all(dir);
}

// bf16 mixed precision on the README's demo (numbers-fr, GRU 128 with attention), cut to 5 of
// its 12 epochs to keep the suite short: held-out exact match of at least 95%, what f32 gets.
// (The full demo, README "Mixed precision": 99.28% in bf16, 99.16% in f32.)
TEST(Trainer, DemoInBf16ReachesTheExactMatchOfF32) {
#if defined(__SANITIZE_ADDRESS__)
  // 90 s under the sanitizers for an accuracy check; bf16's code runs there in MixedPrecision.*.
  GTEST_SKIP() << "a five-epoch accuracy run: the release suite runs it";
#endif
  fs::path dir = temp_dir("trainer_bf16_demo"), log = dir / "log.txt";
  // One thread: beside the other tests (ctest -j2) two OpenMP threads fought for the cores and the
  // run took 135 s instead of 10.
  ASSERT_EQ(
      kiln("demo --precision bf16 --epochs 5 --threads 1 --out " + (dir / "out").string(), log), 0)
      << read_file(log);
  std::string text = read_file(log);
  EXPECT_CONTAINS(text, "bf16 mixed precision");
  size_t at = text.find("exact match ");
  ASSERT_NE(at, std::string::npos) << text;
  double exact = std::stod(text.substr(at + 12));
  EXPECT_GE(exact, 95.0) << text;
  fs::remove_all(dir);
}

TEST(Trainer, ResumeAppliesOrRefusesChangedFlags) {
  fs::path dir = temp_dir("trainer_flags"), out = dir / "out", log = dir / "log.txt";
  ASSERT_EQ(kiln(with(tiny(out, 1), "--max-steps", "3"), log), 0) << read_file(log);
  std::string resume = " --resume " + (out / "last").string();
  // Refused: the flag, both values, and nothing written.
  struct Refusal {
    const char *flag, *value, *message;
  };
  for (const Refusal& r : {
           Refusal{"--hidden", "16",
                   "--hidden cannot change on --resume: the checkpoint has 8, "
                   "the command line 16"},
           Refusal{"--batch", "20",
                   "--batch cannot change on --resume: the checkpoint has 12, the "
                   "command line 20"},
           Refusal{"--seed", "4", "--seed cannot change on --resume: the checkpoint has 3"},
           Refusal{"--cell", "lstm",
                   "--cell cannot change on --resume: the checkpoint has \"gru\", "
                   "the command line \"lstm\""},
           Refusal{"--task-size", "61", "--task-size cannot change on --resume"},
           Refusal{"--accum-steps", "2", "--accum-steps cannot change on --resume"},
       }) {
    SCOPED_TRACE(r.flag);
    EXPECT_EQ(kiln(with(tiny(out, 1), r.flag, r.value) + resume, log), 1) << read_file(log);
    EXPECT_CONTAINS(read_file(log), r.message);
    EXPECT_EQ(read_file(log).find("data:"), std::string::npos);  // refused before any work
  }
  EXPECT_EQ(
      kiln(tiny(out, 1) + " --config " + (out / "last" / "config.json").string() + resume, log), 1);
  EXPECT_CONTAINS(read_file(log), "--config cannot be given with --resume");
  // Applied: the new values are in the resumed run's checkpoint.
  ASSERT_EQ(
      kiln(tiny(out, 2) + " --lr 0.01 --max-steps 6 --patience 4 --log-every 7" + resume, log), 0)
      << read_file(log);
  seq2seq::TrainOptions o = seq2seq::load_checkpoint_options((out / "last").string(), "test");
  EXPECT_EQ(o.lr, 0.01);
  EXPECT_EQ(o.epochs, 2);
  EXPECT_EQ(o.max_steps, 6);
  EXPECT_EQ(o.patience, 4);
  EXPECT_EQ(o.log_every, 7);
  EXPECT_EQ(state_of(out / "last").steps, 6);
  // Left out: the checkpoint's (epochs 2, max-steps 6: nothing left).
  ASSERT_EQ(kiln("train --resume " + (out / "last").string() + " --out " + out.string(), log), 0)
      << read_file(log);
  EXPECT_CONTAINS(read_file(log), "stopped at step 6, its --max-steps");
  fs::remove_all(dir);
}

// Every flag of `kiln train --help` is one resume_options() applies or refuses by name (a new
// flag must be added to its table), and each names a field of config.json.
TEST(Trainer, ResumeKnowsEveryTrainFlag) {
  fs::path dir = temp_dir("trainer_help"), help = dir / "help.txt";
  ASSERT_EQ(kiln("train --help", help), 0);
  std::istringstream lines(read_file(help));
  std::vector<std::string> given;
  for (std::string line; std::getline(lines, line);) {
    size_t at = line.find("--");
    if (line.rfind("  -", 0) != 0 || at == std::string::npos) continue;     // not an option line
    std::string flag = line.substr(at, line.find_first_of(" ,", at) - at);  // the first name
    // What --resume does not take: another run's settings as a whole, or a fresh start.
    if (flag == "--help" || flag == "--config" || flag == "--preset" || flag == "--overwrite") {
      continue;
    }
    EXPECT_TRUE(seq2seq::resume_knows_flag(flag)) << flag;
    given.push_back(flag);
  }
  EXPECT_GT(given.size(), 50u);
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.model.source_vocab = o.model.target_vocab = 10;  // as a checkpoint's config.json has them
  try {                                              // nothing changed: nothing refused
    seq2seq::resume_options(o, o, given);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  fs::remove_all(dir);
}

TEST(Trainer, EpochsZeroPreparesDataAndVocabularies) {
  fs::path dir = temp_dir("trainer_zero"), out = dir / "out", log = dir / "log.txt";
  ASSERT_EQ(kiln(tiny(out, 0), log), 0) << read_file(log);
  EXPECT_CONTAINS(read_file(log), "data: 52 train / 8 valid / 0 test pairs");
  EXPECT_CONTAINS(read_file(log), "--epochs 0: data and vocabularies prepared in " + out.string() +
                                      "/vocab (config.json, source_vocab.txt, target_vocab.txt)");
  for (const char* file : {"config.json", "source_vocab.txt", "target_vocab.txt"})
    EXPECT_TRUE(fs::exists(out / "vocab" / file)) << file;
  EXPECT_FALSE(fs::exists(out / "last"));
  seq2seq::TrainOptions o = seq2seq::load_checkpoint_options((out / "vocab").string(), "test");
  EXPECT_EQ(
      o.model.source_vocab,
      static_cast<int64_t>(data::Vocab::load((out / "vocab/source_vocab.txt").string()).size()));
  // Again into the same folder: refused as any fresh run over an old one, unless --overwrite.
  EXPECT_EQ(kiln(tiny(out, 0), log), 1);
  EXPECT_EQ(kiln(tiny(out, 0) + " --overwrite", log), 0) << read_file(log);
  fs::remove_all(dir);
}

// The <path points="..."> of the polyline whose stroke is `color`, as "x,y" pairs.
std::vector<std::string> polyline(const std::string& svg, const std::string& color) {
  size_t at = svg.find("stroke=\"" + color + "\"");
  if (at == std::string::npos) return {};
  size_t begin = svg.find("points=\"", at) + 8;
  std::istringstream points(svg.substr(begin, svg.find('"', begin) - begin));
  std::vector<std::string> pairs;
  for (std::string p; points >> p;) pairs.push_back(p);
  return pairs;
}

TEST(Trainer, LossSvgCoversTheWholeRunAcrossResumes) {
  fs::path dir = temp_dir("trainer_svg"), out = dir / "out", log = dir / "log.txt";
  ASSERT_EQ(kiln(tiny(out, 1), log), 0) << read_file(log);
  ASSERT_EQ(kiln(tiny(out, 2) + " --resume " + (out / "last").string(), log), 0) << read_file(log);
  std::string svg = read_file(out / "loss.svg");
  EXPECT_EQ(polyline(svg, "#1f77b4").size(), 5u);  // every line of metrics.jsonl, both runs
  EXPECT_EQ(polyline(svg, "#d62728").size(), 5u);
  EXPECT_CONTAINS(svg, ">step</text>");
  EXPECT_CONTAINS(svg, ">10</text>");  // the last tick of the step axis

  // Without validation data, no valid line at all.
  fs::path none = dir / "none";
  std::string args = tiny(none, 2);
  args.replace(args.find("--valid-pairs 8"), 15, "--train-pairs 60");
  ASSERT_EQ(kiln(args, log), 0) << read_file(log);
  svg = read_file(none / "loss.svg");
  EXPECT_EQ(polyline(svg, "#1f77b4").size(), 2u);  // the two epoch ends
  EXPECT_TRUE(polyline(svg, "#d62728").empty());
  EXPECT_EQ(svg.find(">valid<"), std::string::npos);
  fs::remove_all(dir);
}

// One update from 4 batches accumulated equals one from a batch of the 4 together: the same
// gradients and, after an Adam step, the same parameters, within float rounding (the sums run in
// another order: 1e-6 absolute + 1e-4 relative; the test prints the largest difference).
TEST(Trainer, AccumulatingFourBatchesEqualsOneBatchOfTheFour) {
  std::vector<data::EncodedPair> pairs;
  for (int64_t i = 0; i < 24; ++i) {
    data::EncodedPair p;
    for (int64_t k = 0; k < 2 + i % 5; ++k) p.source.push_back(4 + (i * 7 + k * 3) % 9);
    for (int64_t k = 0; k < 1 + (i * i) % 7; ++k) p.target.push_back(4 + (i * 5 + k) % 11);
    pairs.push_back(p);
  }
  data::BatchOptions split;
  split.batch_size = 6;
  split.bucket_by_length = false;
  split.shuffle = false;
  data::BatchOptions joined = split;
  joined.batch_size = 24;
  std::vector<data::Batch> four = data::make_batches(pairs, split),
                           one = data::make_batches(pairs, joined);
  ASSERT_EQ(four.size(), 4u);
  ASSERT_EQ(one.size(), 1u);
  // Batches of different token counts, so the weighting matters.
  EXPECT_NE(four[0].num_target_tokens, four[1].num_target_tokens);

  seq2seq::ModelConfig config;
  config.source_vocab = 13;
  config.target_vocab = 15;
  config.embed_size = 6;
  config.hidden_size = 8;
  config.num_layers = 2;
  config.attention = seq2seq::Attention::bahdanau;
  config.dropout = 0;  // draws differ between the split and the joined batches
  auto run = [&](const std::vector<data::Batch>& batches, double& loss) {
    manual_seed(5);
    auto model = std::make_unique<seq2seq::Seq2Seq>(config);
    model->train();
    std::vector<const data::Batch*> group;
    for (const data::Batch& b : batches) group.push_back(&b);
    loss = seq2seq::accumulate_gradients(*model, group, 0.1, 1.0).item();
    return model;
  };
  double loss_four = 0, loss_one = 0;
  auto a = run(four, loss_four), b = run(one, loss_one);
  EXPECT_NEAR(loss_four, loss_one, 1e-6 * loss_one);
  std::vector<Tensor> pa = a->parameters(), pb = b->parameters();
  float max_difference = 0;
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    ASSERT_TRUE(pa[i].grad().defined());
    EXPECT_TRUE(testing::all_close(pa[i].grad(), pb[i].grad(), 1e-6, 1e-4));
    std::vector<float> ga = pa[i].grad().to_vector<float>(), gb = pb[i].grad().to_vector<float>();
    for (size_t k = 0; k < ga.size(); ++k)
      max_difference = std::max(max_difference, std::fabs(ga[k] - gb[k]));
  }
  std::printf("largest gradient difference: %.3g\n", max_difference);
  nn::Adam adam_a(pa, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0}),
      adam_b(pb, nn::AdamOptions{0.01, 0.9, 0.999, 1e-8, 0});
  adam_a.step();
  adam_b.step();
  for (size_t i = 0; i < pa.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    EXPECT_TRUE(testing::all_close(pa[i], pb[i], 1e-6, 1e-4));
  }
}

// A whole training step (teacher-forced forward with attention and padding, loss, backward, the
// clip factor, Adam, the loss meter) on make_batch's batches reads nothing back: the index checks,
// the embeddings' gradient sort and the length mask use the batch's host copies, a non-finite
// norm is handled on the device, and the loss stays there. On the CPU the profiler counts the
// reads a GPU would wait for; there must be none. Without the host copies the same step gives the
// same numbers and reads the ids back.
TEST(Trainer, ATrainingStepReadsNothingBackFromTheDevice) {
  std::vector<data::EncodedPair> pairs;
  for (int64_t i = 0; i < 12; ++i) {
    data::EncodedPair p;
    for (int64_t k = 0; k < 2 + i % 4; ++k) p.source.push_back(4 + (i * 7 + k * 3) % 9);
    for (int64_t k = 0; k < 1 + (i * i) % 5; ++k) p.target.push_back(4 + (i * 5 + k) % 11);
    pairs.push_back(p);
  }
  data::BatchOptions options;
  options.batch_size = 6;
  std::vector<data::Batch> batches = data::make_batches(pairs, options);
  seq2seq::ModelConfig config;
  config.source_vocab = 13;
  config.target_vocab = 15;
  config.embed_size = 6;
  config.hidden_size = 8;
  config.attention = seq2seq::Attention::bahdanau;
  config.dropout = 0.1;
  auto train = [&](bool host_copies, int64_t& reads) {
    manual_seed(6);
    seq2seq::Seq2Seq model(config);
    model.train();
    nn::Adam adam(model.parameters(), nn::AdamOptions{0.01});
    nn::StepMeter meter;
    std::vector<data::Batch> used = batches;
    if (!host_copies) {
      for (data::Batch& b : used) {
        b.host_source = b.host_source_lengths = b.host_target_in = b.host_target_out =
            b.host_target_mask = Tensor();
      }
    }
    profiler::start();
    for (const data::Batch& b : used) {
      adam.zero_grad();
      Tensor loss = seq2seq::accumulate_gradients(model, {&b}, 0.1, 1.0);
      nn::ClipFactor clip = nn::clip_grad_norm_factor(model.parameters(), 1.0);
      adam.step(clip.scale);
      meter.add(loss, clip.norm, adam.step_gate(), static_cast<double>(b.num_target_tokens));
    }
    profiler::stop();
    reads = profiler::summary().host_syncs;
    return meter.take().loss_sum;  // read after the profile
  };
  int64_t reads_with = -1, reads_without = -1;
  double with = train(true, reads_with), without = train(false, reads_without);
  EXPECT_EQ(reads_with, 0);
  EXPECT_GT(reads_without, 0);  // the counter does see the reads it should
  EXPECT_EQ(with, without);
  EXPECT_GT(with, 0);
  // A host copy that does not fit its tensor is refused by name.
  std::string error = testing::error_of([&] {
    embedding(ones({13, 4}), batches[0].source, -1, from_vector<int64_t>({1, 2}, {2}));
  });
  EXPECT_CONTAINS(error,
                  "embedding: the host copy of the index must be an integer tensor on the cpu");
}

// A diverged run's losses print as "nan", never "-nan" (printf shows a NaN's sign bit).
TEST(Trainer, EpochLineShowsANegativeNanAsNan) {
  seq2seq::EpochMetrics m;
  m.epoch = 3;
  m.train_loss = -std::nan("");
  m.valid_loss = -std::nan("");
  ASSERT_TRUE(std::signbit(m.valid_loss));
  EXPECT_CONTAINS(seq2seq::epoch_line(m, true), "epoch 3: train loss nan, valid loss nan,");
  EXPECT_CONTAINS(seq2seq::epoch_line(m, false), "epoch 3: train loss nan, no validation split");
}

TEST(Trainer, OldConfigAndStateFilesKeepTheirMeaning) {
  // A config.json and a state.json from before steps: the new fields take their defaults.
  seq2seq::TrainOptions o = seq2seq::TrainOptions::from_json(R"({"task": "reverse"})", "old");
  EXPECT_EQ(o.save_every, 0);
  EXPECT_EQ(o.accum_steps, 1);
  EXPECT_EQ(o.patience, 0);
  EXPECT_EQ(o.bleu_sentences, -1);
  seq2seq::TrainState s = seq2seq::parse_train_state(
      R"({"epoch": 3, "steps": 30, "rng_seed": 1, "rng_offset": 99, "best_valid_loss": 2.5})",
      "old/state.json");
  EXPECT_EQ(s.epoch, 3);
  EXPECT_EQ(s.epoch_batches, 0);
  EXPECT_EQ(s.bad_validations, 0);
  EXPECT_EQ(s.best_valid_loss, 2.5);
}

}  // namespace
}  // namespace kiln
