// The training loop of kiln's translator (see trainer.h): set up, then per epoch train, validate,
// report and checkpoint.
#include "models/seq2seq/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include "core/autocast.h"
#include "core/cuda_runtime.h"
#include "core/error.h"
#include "core/profiler.h"
#include "core/random.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "kernels/cuda_graph.h"
#include "kernels/factories.h"
#include "kernels/gemm.h"
#include "kernels/threads.h"
#include "models/data/batching.h"
#include "models/data/tokenizer.h"
#include "models/metrics.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/prepare.h"
#include "models/seq2seq/run_folder.h"
#include "models/seq2seq/translator.h"
#include "nn/averaging.h"
#include "nn/optim.h"

namespace kiln::seq2seq {

namespace {

using Log = std::function<void(const std::string&)>;
using Clock = std::chrono::steady_clock;

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainOptions& o, std::vector<Tensor> params) {
  if (o.optimizer == "sgd") {
    return std::make_unique<nn::SGD>(params, nn::SgdOptions{o.lr, o.momentum, 0, o.weight_decay});
  }
  if (o.optimizer == "rmsprop") {
    return std::make_unique<nn::RMSprop>(params,
                                         nn::RmspropOptions{o.lr, 0.99, 1e-8, o.weight_decay, 0});
  }
  nn::AdamOptions adam{o.lr, 0.9, 0.999, 1e-8, o.weight_decay};
  if (o.optimizer == "adamw") return std::make_unique<nn::AdamW>(params, adam);
  return std::make_unique<nn::Adam>(params, adam);
}

std::unique_ptr<nn::LrSchedule> make_schedule(const TrainOptions& o, int64_t total_steps) {
  if (o.schedule == "step") return std::make_unique<nn::StepDecayLr>(o.lr, o.step_size, o.gamma);
  if (o.schedule == "inverse-sqrt") {
    return std::make_unique<nn::WarmupInverseSqrtLr>(o.lr, std::max<int64_t>(o.warmup, 1));
  }
  if (o.schedule == "cosine") {
    return std::make_unique<nn::WarmupCosineLr>(o.lr, o.warmup,
                                                std::max<int64_t>(total_steps, o.warmup + 1), 0.0);
  }
  return std::make_unique<nn::ConstantLr>(o.lr);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What the loop works on, set up by train().
class GraphedSteps;

struct Run {
  const TrainOptions& o;
  const Device& device;
  const Prepared& p;
  Seq2Seq& model;
  nn::Optimizer& opt;
  const nn::LrSchedule& schedule;
  const Log& log;
  const std::string& out_dir;
  const ProgressLine& progress;
  bool live_progress;       // the in-place line on a terminal; else a log line every log_every
  Clock::time_point start;  // of this process's training, for --max-time
  nn::ExponentialMovingAverage* ema = nullptr;  // --ema: the weight average, else null
  profiler::StepProfiler* profile = nullptr;    // --profile / KILN_PROFILE (inactive: off)
  // Data parallelism (mpirun -np N): every rank trains on its share of each global batch, and
  // dp leaves the global batch's gradients on all of them. Without a launcher, a world of one
  // whose dp is plain backward. Only rank 0, the writer, logs and writes files.
  dist::DataParallel* dp = nullptr;
  bool writer = true;
  nn::StepMeter* meter = nullptr;  // the loss and norm of the steps not yet shown, on the device
  GraphedSteps* graphs = nullptr;  // --cuda-graph, else null
  // The automatic thread count's self-timing (kernels/threads.h): on the CPU in a world of one
  // (under mpirun a step's time includes waiting for the other ranks), else null.
  StepThreadTuner* thread_tuner = nullptr;

  dist::Communicator& comm() const { return dp->communicator(); }
};

// Sums `values` over the ranks in place: one small collective (nothing in a world of one).
void sum_over_ranks(const Run& r, std::vector<double>& values) {
  if (!r.comm().has_backend()) return;
  Tensor t = from_vector(values, {static_cast<int64_t>(values.size())});
  r.comm().all_reduce(t, dist::ReduceOp::sum);
  const double* summed = t.data<double>();
  std::copy(summed, summed + values.size(), values.begin());
}

// Rank 0's answer, on every rank: for decisions that rest on one clock or must not differ by a
// rounding (stopping), so that no rank leaves while the others wait in a collective.
bool rank0_says(const Run& r, bool answer) {
  std::vector<double> vote{r.writer && answer ? 1.0 : 0.0};
  sum_over_ranks(r, vote);
  return r.comm().has_backend() ? vote[0] > 0 : answer;
}

// The random stream (dropout, scheduled sampling) of one rank's share of one step: a function of
// the seed, the rank and the step alone, so ranks draw different numbers, and a resumed run, with
// any number of ranks, draws at each step the numbers an uninterrupted one would have.
uint64_t step_stream(uint64_t seed, int rank, int64_t step) {
  uint64_t x = seed ^ (uint64_t(rank) << 48) ^ (uint64_t(step) * 0x9E3779B97F4A7C15ull);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The weights, optimizer state and random generator of a checkpoint, so that the run continues
// with exactly the numbers an uninterrupted one would have. (Each step reseeds the generator from
// the seed, the rank and the step, so the saved generator state only matters to code that draws
// between steps.)
void restore(const std::string& dir, const TrainState& state, Seq2Seq& model, nn::Optimizer& opt,
             nn::ExponentialMovingAverage* ema) {
  if (ema) {
    load_ema_weights(dir, model, *ema, state.ema_updates);
  } else {
    load_model_weights(dir, model);
  }
  load_optimizer_state(dir, opt);
  default_generator().manual_seed(state.rng_seed);
  default_generator().set_offset(state.rng_offset);
}

// One step's figures, left on the device (read by the loop's StepMeter when it shows them).
struct StepResult {
  Tensor loss;  // this rank's part of the mean loss per target token of the global group
  Tensor norm;  // the gradient norm before clipping (undefined without --clip)
};

// This rank's share of one global batch (data parallelism; in a world of one, the whole batch).
struct Share {
  data::Batch batch;          // no tensors when this rank has no column of the batch
  int64_t global_tokens = 0;  // the whole batch's real target tokens, over all ranks
};

// Step `step` (1-based) over the global batches `group`. Nothing is read back to the host: a
// non-finite gradient norm makes the clip factor NaN, and the optimizer (and the weight average)
// drop the update on the device.
// What a step sets on the host before its device work: the random stream and the learning rate.
void begin_step(const Run& r, int64_t step) {
  default_generator().manual_seed(step_stream(r.o.seed, r.comm().rank(), step));
  r.opt.set_lr(r.schedule.lr_at(r.opt.step_count() + 1));
}

// A step's device work, from zeroing the gradients to the optimizer's update: what --cuda-graph
// captures. fixed_shapes: it is being captured (HostCopies::fixed_shapes).
StepResult step_work(const Run& r, const std::vector<const Share*>& group, bool fixed_shapes) {
  // Eagerly the gradients are reset to none, and backward hands each parameter its gradient
  // without a copy; a captured graph (fixed_shapes) needs them to keep their memory: zeroed.
  r.opt.zero_grad(/*set_to_none=*/!fixed_shapes);
  std::vector<const data::Batch*> mine;
  int64_t global_tokens = 0;
  for (const Share* share : group) {
    mine.push_back(&share->batch);
    global_tokens += share->global_tokens;
  }
  // --precision bf16: the forward and backward products of this step take bf16 inputs.
  AutocastScope autocast(r.o.precision == "bf16" ? DType::bf16 : DType::f32);
  Tensor loss = accumulate_gradients(r.model, mine, r.o.label_smoothing, r.o.teacher_forcing, r.dp,
                                     global_tokens, fixed_shapes);
  // The clip factor is applied inside the optimizer's fused update (no separate scaling pass).
  nn::ClipFactor clip;
  if (r.o.clip > 0) clip = nn::clip_grad_norm_factor(r.model.parameters(), r.o.clip);
  r.opt.step(clip.scale);
  return {loss, clip.norm};
}

StepResult train_step(const Run& r, const std::vector<const Share*>& group, int64_t step) {
  profiler::ProfileScope scope("train step", profiler::Category::step);
  begin_step(r, step);
  StepResult result = step_work(r, group, false);
  if (r.ema) r.ema->update(r.opt.step_gate());
  return result;
}

// --cuda-graph (kernels/cuda_graph.h). A batch shape's step runs eagerly the first time the shape
// is met, which makes what every later step reuses in place (gradients, optimizer state, cuBLAS's
// handle, the launch tables); the second time it is captured into a graph with a batch of the
// graph's own, and replayed; from then on the batch is copied into the graph's and the graph
// replayed: one launch for the step's hundreds of kernels, nothing read back. The seed and the
// learning rate are set before (begin_step: the graph reads them from the device), the weight
// average after (its decay changes every step). All three kinds of step run the same work with
// fixed shapes, so a replay computes what the eager step would.
class GraphedSteps {
 public:
  StepResult run(const Run& r, const Share& share, int64_t step) {
    profiler::ProfileScope scope("train step", profiler::Category::step);
    begin_step(r, step);
    const data::Batch& b = share.batch;
    Entry& e = entries_[{b.source.size(0), b.target_in.size(0), b.source.size(1)}];
    StepResult result;
    if (e.seen++ == 0) {
      result = step_work(r, {&share}, true);
    } else {
      if (!e.graph) {
        e.inputs = share;  // the host copies are the capture's; the device tensors the graph's
        data::Batch& in = e.inputs.batch;
        for (Tensor* t : {&in.source, &in.source_lengths, &in.target_in, &in.target_out,
                          &in.target_mask}) {
          *t = copy_to(*t, t->options());
        }
        e.graph = std::make_unique<CudaGraph>(r.device);
        e.graph->capture([&] { e.result = step_work(r, {&e.inputs}, true); });  // counts the step
        ++captured_;
      } else {
        NoGradGuard no_grad;
        const std::array<Tensor, 5> to = device_tensors(e.inputs.batch), from = device_tensors(b);
        for (size_t k = 0; k < to.size(); ++k) copy_(to[k], from[k]);
        r.opt.count_replayed_step();
      }
      e.graph->replay();
      ++replays_;
      result = e.result;
    }
    if (r.ema) r.ema->update(r.opt.step_gate());
    return result;
  }
  int64_t captured() const { return captured_; }
  int64_t replays() const { return replays_; }

 private:
  struct Entry {
    int64_t seen = 0;
    Share inputs;  // the graph's batch: the tensors its replays read
    std::unique_ptr<CudaGraph> graph;
    StepResult result;  // the graph's loss and norm, rewritten by every replay
  };
  static std::array<Tensor, 5> device_tensors(const data::Batch& b) {
    return {b.source, b.source_lengths, b.target_in, b.target_out, b.target_mask};
  }
  std::map<std::array<int64_t, 3>, Entry> entries_;  // by (S, T, B)
  int64_t captured_ = 0, replays_ = 0;
};

// How the training pairs are cut into batches (the epoch's seed aside).
data::BatchOptions batch_options(const TrainOptions& o) {
  data::BatchOptions batching;
  batching.batch_size = o.batch_size;
  batching.num_steps = o.num_steps;
  batching.batch_tokens = o.batch_tokens;
  if (o.cuda_graph) batching.pad_steps_to = TrainOptions::kGraphStepMultiple;
  return batching;
}

// The batches of one epoch, in their order: a function of the seed and the epoch alone, so a run
// resumed inside the epoch makes the same ones and continues with the batch after its checkpoint.
// The same global batches with any number of ranks; each rank builds only its share of each.
std::vector<Share> epoch_batches(const Run& r, int64_t epoch) {
  data::BatchOptions batching = batch_options(r.o);
  batching.seed = r.o.seed * 1000003 + static_cast<uint64_t>(epoch);  // reproducible per epoch
  std::vector<Share> shares;
  for (const std::vector<int64_t>& global : data::plan_batches(r.p.train, batching)) {
    Share share;
    share.global_tokens = data::count_target_tokens(r.p.train, global, batching);
    auto [begin, end] =
        data::rank_share(r.p.train, global, batching, r.comm().rank(), r.comm().world_size());
    if (begin < end) {
      share.batch = data::make_batch(r.p.train, {global.begin() + begin, global.begin() + end},
                                     batching, r.device);
    }
    shares.push_back(std::move(share));
  }
  return shares;
}

bool has_validation(const Run& r) { return !r.p.split.valid.empty(); }

// The training half of a metrics line: the epoch's figures so far.
EpochMetrics epoch_so_far(const Run& r, int64_t epoch, const TrainState& state, double grad_norm) {
  EpochMetrics m;
  m.epoch = epoch;
  m.steps = state.steps;
  m.seconds = state.epoch_seconds;
  m.train_loss = state.epoch_tokens ? state.epoch_loss_sum / state.epoch_tokens : 0;
  m.tokens_per_second = state.epoch_tokens / std::max(m.seconds, 1e-9);
  m.lr = r.opt.lr();
  m.grad_norm = grad_norm;
  return m;
}

// Validation: loss by teacher forcing, BLEU and exact match of greedy translations of the first
// bleu_sentences pairs (all with -1). Leaves the model in eval mode.
void validate(const Run& r, EpochMetrics& m) {
  std::optional<nn::AveragedWeightsScope> averaged;  // --ema: validate the average
  if (r.ema) averaged.emplace(*r.ema);
  r.model.eval();
  const std::vector<data::SentencePair>& valid = r.p.split.valid;
  if (valid.empty()) return;
  // Borrows the model: the no-op deleter leaves it to train().
  Translator t{std::shared_ptr<Seq2Seq>(&r.model, [](Seq2Seq*) {}),
               r.p.source_tokenizer,
               r.p.target_tokenizer,
               r.p.source_vocab,
               r.p.target_vocab,
               r.o,
               r.device};
  // Each rank scores and translates its slice of the pairs; the sums (NLL and tokens, BLEU's n-gram
  // counts, exact matches) are added over the ranks, so every rank gets the figures of the whole.
  const int rank = r.comm().rank(), ranks = r.comm().world_size();
  auto slice = [&](size_t n) {
    return std::make_pair(valid.begin() + n * rank / ranks, valid.begin() + n * (rank + 1) / ranks);
  };
  auto [nll_begin, nll_end] = slice(valid.size());
  Translator::NllSum nll = t.total_nll({nll_begin, nll_end});
  size_t n = valid.size();
  if (r.o.bleu_sentences >= 0) n = std::min(n, static_cast<size_t>(r.o.bleu_sentences));
  auto [bleu_begin, bleu_end] = slice(n);
  std::vector<std::string> sources, references, hypotheses;
  for (auto pair = bleu_begin; pair != bleu_end; ++pair) {
    sources.push_back(pair->source);
    references.push_back(pair->target);  // the raw text, as sacreBLEU scores against
  }
  for (const auto& h : t.translate(sources)) hypotheses.push_back(t.to_text(h[0]));
  metrics::BleuScore bleu =
      metrics::corpus_bleu_score(hypotheses, references, metrics::BleuSmoothing::exp);
  double exact = metrics::exact_match(hypotheses, references) * hypotheses.size();
  std::vector<double> sums{nll.nll, double(nll.tokens), double(bleu.hypothesis_length),
                           double(bleu.reference_length), exact};
  for (int k = 0; k < 4; ++k)
    sums.insert(sums.end(), {double(bleu.matches[k]), double(bleu.totals[k])});
  sum_over_ranks(r, sums);
  std::array<int64_t, 4> matches{}, totals{};
  for (int k = 0; k < 4; ++k) {
    matches[k] = static_cast<int64_t>(sums[5 + 2 * k]);
    totals[k] = static_cast<int64_t>(sums[6 + 2 * k]);
  }
  m.valid_loss = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
  m.valid_bleu =
      metrics::bleu_from_counts(matches, totals, static_cast<int64_t>(sums[2]),
                                static_cast<int64_t>(sums[3]), metrics::BleuSmoothing::exp);
  m.valid_exact = n ? std::round(sums[4]) / n : 0.0;
  m.validated = true;
}

// A checkpoint of where the run stands now.
void save_to(const Run& r, const std::string& dir, TrainState& state) {
  state.rng_seed = default_generator().seed();
  state.rng_offset = default_generator().offset();
  save_checkpoint(dir, r.o, r.model, r.opt, r.p, state, r.ema);
}

// The step-<N> folders in out_dir, by step.
std::vector<std::pair<int64_t, std::string>> step_folders(const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(out_dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.size() == 5 ||
        name.find_first_not_of("0123456789", 5) != std::string::npos) {
      continue;
    }
    found.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// last/, the commit point resume continues from; before it, with keep_checkpoints K, step-<N>,
// and afterwards the step folders beyond the newest K go. (A kill while one is being removed
// leaves part of an old folder, which the next save removes.)
void save_last(const Run& r, TrainState& state) {
  if (!r.writer) return;
  if (r.o.keep_checkpoints > 0) {
    save_to(r, r.out_dir + "/step-" + std::to_string(state.steps), state);
  }
  save_to(r, r.out_dir + "/last", state);
  auto folders = step_folders(r.out_dir);
  for (size_t k = 0; k + r.o.keep_checkpoints < folders.size(); ++k) {
    std::filesystem::remove_all(folders[k].second);
  }
}

// After a validation: whether it is the best so far by early_stop_metric; counts the validations
// without improvement for --patience.
bool record_validation(const Run& r, const EpochMetrics& m, TrainState& state) {
  bool better = r.o.early_stop_metric == "bleu" ? m.valid_bleu > state.best_valid_bleu
                                                : m.valid_loss < state.best_valid_loss;
  state.best_valid_loss = std::min(state.best_valid_loss, m.valid_loss);
  state.best_valid_bleu = std::max(state.best_valid_bleu, m.valid_bleu);
  if (better) {
    state.bad_validations = 0;
    state.best_step = state.steps;
  } else {
    ++state.bad_validations;
  }
  return better;
}

// A line of metrics.jsonl, the loss curve of the whole run, and best/ when `m` is the best
// validation (every epoch end without validation data). True when early stopping triggers.
bool report(const Run& r, EpochMetrics& m, TrainState& state, std::vector<EpochMetrics>& history) {
  bool best = !m.validated || record_validation(r, m, state);
  m.early_stop =
      rank0_says(r, m.validated && r.o.patience > 0 && state.bad_validations >= r.o.patience);
  state.train_loss = m.train_loss;
  state.valid_loss = m.valid_loss;
  history.push_back(m);
  if (!r.writer) return m.early_stop;
  append_metrics_line(r.out_dir + "/metrics.jsonl", m);
  write_loss_svg(r.out_dir + "/loss.svg", read_metrics(r.out_dir + "/metrics.jsonl"));
  if (m.early_stop) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "early stopping at step %ld (epoch %ld): valid %s did not improve for %ld "
                  "validations; best/ holds step %ld",
                  static_cast<long>(state.steps), static_cast<long>(m.epoch),
                  r.o.early_stop_metric == "bleu" ? "BLEU" : "loss",
                  static_cast<long>(state.bad_validations), static_cast<long>(state.best_step));
    r.log(line);
  }
  // best/ before last/: last/ is the commit point. A crash between the two resumes from the
  // previous last/, whose best is the previous one, so the redone validation saves best/ again.
  if (best) save_to(r, r.out_dir + "/best", state);
  return m.early_stop;
}

// --max-steps and --max-time: "" to go on, else why the run stops now.
std::string limit_reached(const Run& r, const TrainState& state) {
  if (r.o.max_steps > 0 && state.steps >= r.o.max_steps) {
    return "--max-steps " + std::to_string(r.o.max_steps) + " reached";
  }
  if (r.o.max_time > 0 && seconds_since(r.start) >= r.o.max_time) {
    return "--max-time " + format_duration(r.o.max_time) + " reached";
  }
  return "";
}

// The message for a limit rank 0 said is reached (the other ranks' clocks may not say so yet).
std::string why_stop(const Run& r, const TrainState& state) {
  std::string why = limit_reached(r, state);
  return why.empty() ? "a limit reached on rank 0" : why;
}

// The log line of a kept switch of the automatic thread count (kernels/threads.h), e.g.
// "threads: 1 (automatic: 2 threads took 3.20 ms per 1000 tokens, 1 took 2.01)".
std::string thread_switch_line(const StepThreadTuner& tuner) {
  const int all = automatic_threads_uncapped(), now = num_threads();
  const int before = tuner.limit() == 1 ? all : 1;
  char text[200];
  std::snprintf(text, sizeof(text),
                "threads: %d (automatic: %d thread%s took %.2f ms per 1000 tokens, %d took %.2f)",
                now, before, before == 1 ? "" : "s", tuner.switched_from() * 1e6, now,
                tuner.switched_to() * 1e6);
  return text;
}

// Trains epoch `epoch` from the batch `state` stands at (0, or where a checkpoint inside the
// epoch stopped), validating and saving at the steps the options say. At the epoch's end,
// validates and saves. True when the run must stop (a limit, or early stopping), after saving.
bool train_epoch(const Run& r, int64_t epoch, TrainState& state,
                 std::vector<EpochMetrics>& history) {
  r.model.train();
  std::vector<Share> batches = epoch_batches(r, epoch);
  const size_t n = batches.size();
  // The epoch's clock goes on from where the checkpoint left it.
  auto epoch_start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(state.epoch_seconds));
  double grad_norm = 0;
  std::string stop;
  auto say = [&](const std::string& line) {  // a log line, not mixed into the live line
    r.progress.clear();
    r.log(line);
  };
  // The loss and norm stay on the device (r.meter) and are read only when shown: every
  // log_every steps, before a validation, a save or a stop, and at the epoch's end; a live line
  // in a world of one also every half second. So most steps never wait for the device.
  int64_t unread_tokens = 0, first_unread_step = state.steps + 1;
  auto last_read = Clock::now();
  auto read_meter = [&] {
    nn::StepMeter::Totals t = r.meter->take();
    std::vector<double> loss{t.loss_sum};  // this rank's part; the rest is the same on every rank
    sum_over_ranks(r, loss);
    state.epoch_loss_sum += loss[0];
    state.epoch_tokens += static_cast<int64_t>(t.tokens);
    if (t.taken > 0) grad_norm = t.last_norm;
    if (t.dropped > 0 && first_unread_step == state.steps) {
      say("epoch " + std::to_string(epoch) + " step " + std::to_string(state.steps) +
          ": non-finite gradient norm, step skipped");
    } else if (t.dropped > 0) {
      say("epoch " + std::to_string(epoch) + " steps " + std::to_string(first_unread_step) + "-" +
          std::to_string(state.steps) + ": " + std::to_string(t.dropped) + " of " +
          std::to_string(t.taken + t.dropped) + " steps skipped: non-finite gradient norm");
    }
    unread_tokens = 0;
    first_unread_step = state.steps + 1;
    last_read = Clock::now();
  };
  for (size_t i = static_cast<size_t>(state.epoch_batches); i < n;) {
    size_t end = std::min(n, i + static_cast<size_t>(r.o.accum_steps));
    std::vector<const Share*> group;
    int64_t tokens = 0;  // over all ranks
    for (size_t k = i; k < end; ++k) {
      group.push_back(&batches[k]);
      tokens += batches[k].global_tokens;
    }
    r.profile->begin_step();
    if (r.thread_tuner) r.thread_tuner->begin();
    StepResult step = r.graphs ? r.graphs->run(r, *group.front(), state.steps + 1)
                               : train_step(r, group, state.steps + 1);
    if (r.thread_tuner) {
      const int switches = r.thread_tuner->switches();
      r.thread_tuner->end(static_cast<double>(tokens));
      if (r.thread_tuner->switches() != switches) say(thread_switch_line(*r.thread_tuner));
    }
    r.meter->add(step.loss, step.norm, r.opt.step_gate(), static_cast<double>(tokens));
    std::string profile_table;
    if (r.profile->end_step(profile_table)) say(profile_table);
    ++state.steps;
    state.epoch_batches = static_cast<int64_t>(end);
    i = end;
    unread_tokens += tokens;
    // Whether rank 0 (whose clock --max-time follows) says a limit stops the run here: one small
    // collective per step under mpirun, none in a world of one.
    const bool limit = rank0_says(r, !limit_reached(r, state).empty());
    const bool validate_now =
        r.o.valid_every > 0 && state.steps % r.o.valid_every == 0 && has_validation(r);
    const bool save_now = r.o.save_every > 0 && state.steps % r.o.save_every == 0;
    const bool logged = !r.live_progress && !r.o.quiet && state.steps % r.o.log_every == 0;
    const bool live_due =
        r.live_progress && !r.comm().has_backend() && seconds_since(last_read) >= 0.5;
    // The same decision on every rank (reading sums over the ranks), but for the live line.
    if (end == n || limit || validate_now || save_now || live_due ||
        state.steps % r.o.log_every == 0) {
      read_meter();
    }
    state.epoch_seconds = seconds_since(epoch_start);
    double loss = state.epoch_tokens ? state.epoch_loss_sum / state.epoch_tokens : 0;
    double speed = (state.epoch_tokens + unread_tokens) / std::max(state.epoch_seconds, 1e-9);
    r.progress.show(epoch, end, n, state.steps, loss, speed, grad_norm, r.opt.lr());
    if (logged)
      r.log(r.progress.text(epoch, end, n, state.steps, loss, speed, grad_norm, r.opt.lr()));
    if (end == n) break;  // the epoch's end, below
    if (limit) stop = why_stop(r, state);
    bool early = false;
    if (validate_now) {
      EpochMetrics m = epoch_so_far(r, epoch, state, grad_norm);
      validate(r, m);
      r.model.train();
      say("step " + std::to_string(state.steps) + ": " + epoch_line(m, true));
      early = report(r, m, state, history);
    }
    if (!stop.empty() || early || save_now) save_last(r, state);
    if (early) return true;
    if (!stop.empty()) {
      say("stopping at step " + std::to_string(state.steps) + " (epoch " + std::to_string(epoch) +
          ", batch " + std::to_string(end) + "/" + std::to_string(n) + "): " + stop +
          "; last/ saved, --resume continues from it");
      history.push_back(epoch_so_far(r, epoch, state, grad_norm));
      return true;
    }
  }
  r.progress.finish_epoch();
  EpochMetrics m = epoch_so_far(r, epoch, state, grad_norm);
  validate(r, m);
  r.log(epoch_line(m, has_validation(r)));
  state.epoch = epoch;
  state.epoch_batches = 0;
  state.epoch_tokens = 0;
  state.epoch_loss_sum = 0;
  state.epoch_seconds = 0;
  bool early = report(r, m, state, history);
  save_last(r, state);
  if (rank0_says(r, !limit_reached(r, state).empty())) stop = why_stop(r, state);
  if (!stop.empty()) {
    r.log("stopping at step " + std::to_string(state.steps) + " (end of epoch " +
          std::to_string(epoch) + "): " + stop + "; last/ saved, --resume continues from it");
  }
  return early || !stop.empty();
}

// Why a resumed run has nothing left to do ("" when it has).
std::string nothing_left(const TrainOptions& o, const TrainState& s, const std::string& from) {
  if (s.epoch >= o.epochs) {
    return "the run in " + from + " is already complete at epoch " + std::to_string(s.epoch) +
           "; give --epochs above " + std::to_string(s.epoch) + " to train further";
  }
  if (o.max_steps > 0 && s.steps >= o.max_steps) {
    return "the run in " + from + " stopped at step " + std::to_string(s.steps) +
           ", its --max-steps; give a larger --max-steps to train further";
  }
  if (o.patience > 0 && s.bad_validations >= o.patience) {
    return "the run in " + from + " stopped early at step " + std::to_string(s.steps) +
           " (no improvement for " + std::to_string(s.bad_validations) +
           " validations); give a larger --patience, or 0, to train further";
  }
  return "";
}

// The device of this process: under mpirun, "cuda" is the GPU of this rank's local rank (one
// process per GPU).
Device rank_device(const std::string& name, const dist::Communicator& comm) {
  Device device = Device::parse(name);
  if (!device.is_cuda() || !comm.is_distributed()) return device;
  KILN_CHECK(name == "cuda", "train: --device ", name, " under mpirun with ", comm.world_size(),
             " ranks: each rank takes the GPU of its local rank; give --device cuda");
  return Device::cuda(comm.local_rank());
}

// The data of the run on every rank. Rank 0 prepares it (split, subword models, vocabularies)
// and writes what the others need into out_dir/.prepared, which they read as a checkpoint's; a
// run that resumes reads its checkpoint on every rank.
Prepared prepare_on_every_rank(TrainOptions& o, const std::string& out_dir, const std::string& from,
                               const Log& log, dist::Communicator& comm) {
  if (!from.empty() || !comm.is_distributed()) return prepare(o, out_dir, from, log);
  const std::string shared = out_dir + "/.prepared";
  Prepared p;
  if (comm.rank() == 0) {
    p = prepare(o, out_dir, "", log);
    save_vocabularies(shared, o, p);
  }
  comm.barrier();  // the others wait for rank 0's data (within KILN_DIST_TIMEOUT)
  if (comm.rank() != 0) p = prepare(o, out_dir, shared, nullptr);
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove_all(shared);
  return p;
}

// The options and state of the checkpoint a run resumes from (resume_options()).
std::pair<TrainOptions, TrainState> read_resume(const std::string& dir, const TrainOptions& options,
                                                const std::vector<std::string>& flags_given) {
  TrainOptions o = resume_options(load_checkpoint_options(dir, "resume"), options, flags_given);
  o.validate();
  return {o, load_train_state(dir)};
}

}  // namespace

Tensor accumulate_gradients(const Seq2Seq& model, const std::vector<const data::Batch*>& batches,
                            double label_smoothing, double teacher_forcing, dist::DataParallel* dp,
                            int64_t global_tokens, bool fixed_shapes) {
  int64_t total = global_tokens;
  if (total <= 0) {
    total = 0;
    for (const data::Batch* b : batches) total += b->num_target_tokens;
  }
  size_t last = batches.size();  // the last batch with columns: its backward reduces
  for (size_t k = 0; k < batches.size(); ++k) {
    if (batches[k]->source.defined()) last = k;
  }
  Tensor mean;  // on the device: summed without reading anything back
  for (size_t k = 0; k < batches.size(); ++k) {
    const data::Batch* b = batches[k];
    if (!b->source.defined()) continue;  // none of this batch is this rank's
    // The batch's host copies spare the step every read back from the device.
    const HostCopies host{b->host_source,     b->host_source_lengths, b->host_target_in,
                          b->host_target_out, b->host_target_mask,    fixed_shapes};
    Tensor loss = model.teacher_forced_loss(model.encode(b->source, b->source_lengths, host),
                                            b->target_in, b->target_out, b->target_mask,
                                            teacher_forcing, label_smoothing, host);
    double share = static_cast<double>(b->num_target_tokens) / std::max<int64_t>(total, 1);
    if (dp && k == last) {
      dp->backward(loss * share);
    } else {
      backward(loss * share);
    }
    NoGradGuard no_grad;
    Tensor part = loss.detach() * share;
    mean = mean.defined() ? mean + part : part;
  }
  if (dp && last == batches.size()) dp->reduce_gradients();  // this rank had no data this step
  if (!mean.defined()) {  // no column of this step is this rank's
    const Tensor& any = model.parameters().front();
    mean = zeros({}, any.options());
  }
  return mean;
}

std::vector<EpochMetrics> train(const TrainOptions& options, const std::string& out_dir,
                                const std::string& resume_dir, const Log& log_in, bool overwrite,
                                const std::vector<std::string>& flags_given) {
  // Under mpirun every rank runs this; rank 0 alone logs and writes into out_dir.
  dist::Communicator& comm = dist::world();
  const bool writer = comm.rank() == 0;
  Log log = [&](const std::string& line) {
    if (log_in && writer) log_in(line);
  };
  TrainOptions o = options;
  // Read first, so a bad KILN_PROFILE or KILN_CPU_GEMM stops the run before anything is written.
  const int64_t env_profile_steps = profiler::steps_from_env();
  kernels::cpu_gemm_policy();
  std::optional<TrainState> resumed;
  if (!resume_dir.empty()) {
    KILN_CHECK(!overwrite, "train: --overwrite replaces the run in --out and cannot be combined ",
               "with --resume ", resume_dir);
    std::tie(o, resumed) = read_resume(checkpoint_folder(resume_dir), options, flags_given);
    std::string why = nothing_left(o, *resumed, resume_dir);
    if (!why.empty()) {
      std::error_code ec;  // an existing --out still gets what a crash left there cleaned up
      if (writer && std::filesystem::is_directory(out_dir, ec)) RunFolder(out_dir, OutMode::resume);
      log("nothing to train: " + why);
      return {};
    }
  }
  o.validate();
  std::optional<RunFolder> folder;  // held by rank 0, the only writer
  if (writer) {
    folder.emplace(out_dir, !resume_dir.empty() ? OutMode::resume
                            : overwrite         ? OutMode::overwrite
                                                : OutMode::fresh);
  }
  std::string from;  // the checkpoint, read again now that no other run can be writing it
  if (!resume_dir.empty()) {
    from = checkpoint_folder(resume_dir);
    std::tie(o, resumed) = read_resume(from, options, flags_given);
  }
  Device device = rank_device(o.device, comm);
  // --cuda-graph: all of this run's CUDA work on a stream of kiln's own, which can be captured.
  std::optional<cuda::StreamScope> stream;
  if (o.cuda_graph) stream.emplace();
  manual_seed(o.seed);
  Prepared p = prepare_on_every_rank(o, out_dir, from, log, comm);
  log(data_line(p));
  if (o.patience > 0 && p.split.valid.empty()) {
    log("warning: no validation pairs, so --patience " + std::to_string(o.patience) +
        " never stops the run");
  }
  std::vector<std::string> keep_tokenizers = o.tokenizer == "sentencepiece"
                                                 ? std::vector<std::string>{"tokenizers"}
                                                 : std::vector<std::string>{};
  if (!resumed && o.epochs == 0) {  // data and vocabularies only
    if (!writer) return {};
    if (overwrite) folder->clear_previous_run(keep_tokenizers);
    save_vocabularies(out_dir + "/vocab", o, p);
    log("--epochs 0: data and vocabularies prepared in " + out_dir +
        "/vocab (config.json, source_vocab.txt, target_vocab.txt); nothing trained");
    return {};
  }

  manual_seed(o.seed);  // the same initial weights whatever the data loading drew
  Seq2Seq model(o.model);
  model.to(device);
  auto opt = make_optimizer(o, model.parameters());
  std::unique_ptr<nn::ExponentialMovingAverage> ema;
  if (o.ema > 0) ema = std::make_unique<nn::ExponentialMovingAverage>(model, o.ema);
  TrainState state;  // epoch 0, or where the checkpoint stopped
  if (resumed) {
    state = *resumed;
    restore(from, state, model, *opt, ema.get());
    log("resuming from " + resume_dir + " at step " + std::to_string(state.steps) + ", epoch " +
        std::to_string(state.epoch + 1) +
        (state.epoch_batches ? " batch " + std::to_string(state.epoch_batches + 1)
                             : std::string(" start")));
    truncate_metrics(out_dir + "/metrics.jsonl", state.steps);
    // Step folders past the checkpoint belong to the run that went on from it before.
    for (const auto& [step, dir] : step_folders(out_dir)) {
      if (step > state.steps) std::filesystem::remove_all(dir);
    }
  }
  log(model_line(o.model, model.num_parameters(), device) +
      (o.precision == "bf16" ? ", bf16 mixed precision" : ""));
  if (ema) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "weight average: --ema %g (warm-up min(%g, (1 + t) / (10 + t))); validation and "
                  "checkpoints use it",
                  o.ema, o.ema);
    log(line);
  }
  if (overwrite && writer) folder->clear_previous_run(keep_tokenizers);
  // After the restore, so that DataParallel's broadcast of rank 0's values changes nothing.
  dist::DataParallelOptions parallel;
  parallel.reduce = dist::ReduceOp::sum;  // each rank's loss is already over the global tokens
  dist::DataParallel dp(model.parameters(), parallel, comm);
  if (comm.has_backend()) {
    log("data parallel: " + std::to_string(comm.world_size()) + " rank" +
        (comm.world_size() > 1 ? "s" : "") + " (" + comm.backends() +
        "); each global batch is split across them by target tokens, gradients summed in " +
        std::to_string(dp.num_buckets()) + " bucket" + (dp.num_buckets() > 1 ? "s" : "") +
        "; rank 0 logs and writes");
  }

  // The same every epoch: the epoch's seed only orders the batches.
  int64_t batches_per_epoch =
      static_cast<int64_t>(data::plan_batches(p.train, batch_options(o)).size());
  int64_t total_steps = (batches_per_epoch + o.accum_steps - 1) / o.accum_steps * o.epochs;
  if (o.max_steps > 0) total_steps = std::min(total_steps, o.max_steps);
  auto schedule = make_schedule(o, total_steps);
  bool live = writer && isatty(fileno(stdout)) && !o.quiet;
  ProgressLine progress(live, state.epoch + 1, o.epochs,
                        double(state.epoch_batches) / std::max<int64_t>(batches_per_epoch, 1));
  const int64_t profile_steps = o.profile_steps > 0 ? o.profile_steps : env_profile_steps;
  std::string trace = !o.profile_out.empty() ? o.profile_out : profiler::trace_path_from_env();
  if (trace.empty()) trace = out_dir + "/profile.json";
  profiler::StepProfiler profile(profile_steps, trace);
  if (profile_steps > 0) {
    const int64_t first = profiler::StepProfiler::kDefaultWarmup + 1;
    log("profile: recording steps " + std::to_string(first) + "-" +
        std::to_string(first + profile_steps - 1) + " of this run (after " +
        std::to_string(first - 1) + " warm-up steps); then the table, and the trace in " + trace);
  }
  nn::StepMeter meter;
  Run run{o,    device,       p,         model,    *opt, *schedule, log,   out_dir, progress,
          live, Clock::now(), ema.get(), &profile, &dp,  writer,    &meter};
  StepThreadTuner thread_tuner;
  if (device.is_cpu() && !comm.has_backend()) run.thread_tuner = &thread_tuner;
  std::optional<GraphedSteps> graphs;  // after the stream: the graphs go before it
  if (o.cuda_graph) {
    KILN_CHECK(!comm.has_backend(), "train: --cuda-graph runs in one process; under mpirun (",
               comm.world_size(), " ranks) leave it out");
    graphs.emplace();
    run.graphs = &*graphs;
    log("cuda graph: each batch shape's step runs eagerly once, is captured the second time and "
        "replayed after that; batch lengths padded to a multiple of " +
        std::to_string(TrainOptions::kGraphStepMultiple));
  }
  std::vector<EpochMetrics> history;
  for (int64_t epoch = state.epoch + 1; epoch <= o.epochs; ++epoch) {
    if (train_epoch(run, epoch, state, history)) break;
  }
  if (graphs) {
    log("cuda graph: " + std::to_string(graphs->captured()) + " shapes captured, " +
        std::to_string(graphs->replays()) + " steps replayed");
  }
  std::string profile_table;  // the run ended before the last profiled step
  if (profile.finish(profile_table)) log(profile_table);
  return history;
}

}  // namespace kiln::seq2seq
