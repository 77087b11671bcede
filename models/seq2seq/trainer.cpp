// The training loop of kiln's translator (see trainer.h): set up, then per epoch train, validate,
// report and checkpoint.
#include "models/seq2seq/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/random.h"
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

// What the epoch loop works on, set up by train().
struct Run {
  const TrainOptions& o;
  const Device& device;
  const Prepared& p;
  Seq2Seq& model;
  nn::Optimizer& opt;
  const nn::LrSchedule& schedule;
  const Log& log;
  nn::ExponentialMovingAverage* ema = nullptr;  // --ema: the weight average, else null
};

// The weights, optimizer state and random generator of a checkpoint, so that the run continues
// with exactly the numbers an uninterrupted one would have drawn.
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

struct StepResult {
  bool taken = false;  // false: the gradient norm was not finite and the step was skipped
  double loss = 0, grad_norm = 0;
};

StepResult train_step(const Run& r, const data::Batch& b) {
  r.opt.set_lr(r.schedule.lr_at(r.opt.step_count() + 1));
  r.opt.zero_grad();
  Tensor logits = r.model.decode_teacher(r.model.encode(b.source, b.source_lengths), b.target_in,
                                         r.o.teacher_forcing);
  Tensor loss = r.model.loss(logits, b.target_out, b.target_mask, r.o.label_smoothing);
  backward(loss);
  Tensor norm = r.o.clip > 0 ? nn::clip_grad_norm(r.model.parameters(), r.o.clip) : Tensor();
  // Read now: the host decides whether this step is taken.
  double norm_value = norm.defined() ? norm.item() : 0.0;
  if (norm.defined() && !std::isfinite(norm_value)) return {false, 0, norm_value};
  r.opt.step();
  if (r.ema) r.ema->update();
  return {true, loss.item(), norm_value};  // the loss feeds the progress line and epoch mean
}

// How the training pairs are cut into batches (the epoch's seed aside).
data::BatchOptions batch_options(const TrainOptions& o) {
  data::BatchOptions batching;
  batching.batch_size = o.batch_size;
  batching.num_steps = o.num_steps;
  batching.batch_tokens = o.batch_tokens;
  return batching;
}

// One pass over the training pairs, in a fresh order; fills the training half of the metrics.
EpochMetrics train_epoch(const Run& r, int64_t epoch, const ProgressLine& progress) {
  r.model.train();
  data::BatchOptions batching = batch_options(r.o);
  batching.seed = r.o.seed * 1000003 + static_cast<uint64_t>(epoch);  // reproducible per epoch
  std::vector<data::Batch> batches = data::make_batches(r.p.train, batching, r.device);
  EpochMetrics m;
  m.epoch = epoch;
  auto start = Clock::now();
  double loss_sum = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    StepResult step = train_step(r, batches[i]);
    if (!step.taken) {
      r.log("epoch " + std::to_string(epoch) + " step " + std::to_string(i + 1) +
            ": non-finite gradient norm, step skipped");
      continue;
    }
    loss_sum += step.loss * batches[i].num_target_tokens;
    tokens += batches[i].num_target_tokens;
    m.grad_norm = step.grad_norm;
    progress.show(epoch, i + 1, batches.size(), loss_sum / tokens,
                  tokens / std::max(seconds_since(start), 1e-9), step.grad_norm, r.opt.lr());
  }
  progress.finish_epoch();
  m.steps = r.opt.step_count();
  m.seconds = seconds_since(start);
  m.train_loss = tokens ? loss_sum / tokens : 0;
  m.tokens_per_second = tokens / std::max(m.seconds, 1e-9);
  m.lr = r.opt.lr();
  return m;
}

// Validation: loss by teacher forcing, BLEU and exact match of greedy translations of the first
// bleu_sentences pairs.
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
  m.valid_loss = t.mean_nll(valid);
  int64_t n = std::min<int64_t>(r.o.bleu_sentences, static_cast<int64_t>(valid.size()));
  std::vector<std::string> sources, references, hypotheses;
  for (int64_t k = 0; k < n; ++k) {
    sources.push_back(valid[k].source);
    references.push_back(valid[k].target);  // the raw text, as sacreBLEU scores against
  }
  for (const auto& h : t.translate(sources)) hypotheses.push_back(t.to_text(h[0]));
  m.valid_bleu = metrics::corpus_bleu(hypotheses, references, metrics::BleuSmoothing::exp);
  m.valid_exact = metrics::exact_match(hypotheses, references);
}

// After an epoch: metrics.jsonl, loss.svg, out_dir/best when validation improved (every epoch
// without a validation split), out_dir/last. `state` carries the best loss across epochs.
void save_epoch(const Run& r, const std::string& out_dir, const std::vector<EpochMetrics>& history,
                TrainState& state) {
  const EpochMetrics& m = history.back();
  append_metrics_line(out_dir + "/metrics.jsonl", m);
  write_loss_svg(out_dir + "/loss.svg", history);
  bool best = r.p.split.valid.empty() || m.valid_loss < state.best_valid_loss;
  if (best) state.best_valid_loss = m.valid_loss;
  state.epoch = m.epoch;
  state.steps = r.opt.step_count();
  state.train_loss = m.train_loss;
  state.valid_loss = m.valid_loss;
  state.rng_seed = default_generator().seed();
  state.rng_offset = default_generator().offset();
  // best/ before last/: last/ is the epoch's commit point. A crash between the two resumes
  // from the previous last/, whose best loss is the previous one, so the redone epoch saves
  // best/ again.
  if (best) save_checkpoint(out_dir + "/best", r.o, r.model, r.opt, r.p, state, r.ema);
  save_checkpoint(out_dir + "/last", r.o, r.model, r.opt, r.p, state, r.ema);
}

// The options and state of the checkpoint a run resumes from; only the number of epochs may grow.
std::pair<TrainOptions, TrainState> read_resume(const std::string& dir,
                                                const TrainOptions& options) {
  TrainOptions o = load_checkpoint_options(dir, "resume");
  o.epochs = std::max(options.epochs, o.epochs);
  return {o, load_train_state(dir)};
}

}  // namespace

std::vector<EpochMetrics> train(const TrainOptions& options, const std::string& out_dir,
                                const std::string& resume_dir, const Log& log_in, bool overwrite) {
  Log log = [&](const std::string& line) {
    if (log_in) log_in(line);
  };
  TrainOptions o = options;
  std::optional<TrainState> resumed;
  if (!resume_dir.empty()) {
    KILN_CHECK(!overwrite, "train: --overwrite replaces the run in --out and cannot be combined ",
               "with --resume ", resume_dir);
    std::tie(o, resumed) = read_resume(checkpoint_folder(resume_dir), options);
    if (resumed->epoch >= o.epochs) {
      std::error_code ec;  // an existing --out still gets what a crash left there cleaned up
      if (std::filesystem::is_directory(out_dir, ec)) RunFolder(out_dir, OutMode::resume);
      log("nothing to train: the run in " + resume_dir + " is already complete at epoch " +
          std::to_string(resumed->epoch) + "; give --epochs above " +
          std::to_string(resumed->epoch) + " to train further");
      return {};
    }
  } else if (o.epochs == 0) {
    log("nothing to train: --epochs 0");
    return {};
  }
  o.validate();
  RunFolder folder(out_dir, !resume_dir.empty() ? OutMode::resume
                            : overwrite         ? OutMode::overwrite
                                                : OutMode::fresh);
  std::string from;  // the checkpoint, read again now that no other run can be writing it
  if (!resume_dir.empty()) {
    from = checkpoint_folder(resume_dir);
    std::tie(o, resumed) = read_resume(from, options);
  }
  Device device = Device::parse(o.device);
  manual_seed(o.seed);
  Prepared p = prepare(o, out_dir, from, log);
  log(data_line(p));

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
    log("resuming from " + resume_dir + " after epoch " + std::to_string(state.epoch));
    truncate_metrics(out_dir + "/metrics.jsonl", state.epoch);
  }
  log(model_line(o.model, model.num_parameters(), device));
  if (ema) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "weight average: --ema %g (warm-up min(%g, (1 + t) / (10 + t))); validation and "
                  "checkpoints use it",
                  o.ema, o.ema);
    log(line);
  }
  if (overwrite) {
    folder.clear_previous_run(o.tokenizer == "sentencepiece"
                                  ? std::vector<std::string>{"tokenizers"}
                                  : std::vector<std::string>{});
  }

  // The same every epoch: the epoch's seed only orders the batches.
  int64_t batches_per_epoch =
      static_cast<int64_t>(data::plan_batches(p.train, batch_options(o)).size());
  auto schedule = make_schedule(o, batches_per_epoch * o.epochs);
  Run run{o, device, p, model, *opt, *schedule, log, ema.get()};
  ProgressLine progress(isatty(fileno(stdout)) && !o.quiet, state.epoch + 1, o.epochs);
  std::vector<EpochMetrics> history;
  for (int64_t epoch = state.epoch + 1; epoch <= o.epochs; ++epoch) {
    history.push_back(train_epoch(run, epoch, progress));
    validate(run, history.back());
    log(epoch_line(history.back(), !p.split.valid.empty()));
    save_epoch(run, out_dir, history, state);
  }
  return history;
}

}  // namespace kiln::seq2seq
