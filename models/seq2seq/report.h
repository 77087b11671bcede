// What a training run tells people: what it trains on, the live progress line (or a progress line
// every N steps into a log), one summary line per epoch, one line of metrics.jsonl per validation
// and epoch end, and a loss-curve SVG of the whole run (loss.svg).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/prepare.h"

namespace kiln::seq2seq {

// One line of metrics.jsonl: at a validation or an epoch's end, in `epoch` (1-based, the epoch in
// progress) after `steps` updates of the run. The training figures are the epoch's so far.
struct EpochMetrics {
  int64_t epoch = 0, steps = 0;
  double train_loss = 0, valid_loss = 0, valid_bleu = 0, valid_exact = 0, seconds = 0,
         tokens_per_second = 0;
  double lr = 0, grad_norm = 0;
  bool validated = false;   // the valid_ fields hold a validation (not written otherwise)
  bool early_stop = false;  // this validation made early stopping trigger
};

// "data: 6000 train / 500 valid / 1500 test pairs; vocab 14 source, 102 target tokens", with
// the pairs --max-length dropped and ", random split (seed S)" when there are any.
std::string data_line(const Prepared& prepared);
// "model: gru 1x128, embed 32, attention bahdanau, 223334 parameters, on cpu, 2 threads
// (automatic)".
std::string model_line(const ModelConfig& config, int64_t num_parameters, const Device& device);

// "1h05m" or "3m07s", rounded to the second.
std::string format_duration(double seconds);
// Seconds from "90", "45m", "1h30m", "2h", "1m30s" or "1.5h" (units h, m, s; a bare number is
// seconds). Errors name `what` (the flag) and the text.
double parse_duration(const std::string& text, const char* what);

// The progress line: rewritten in place after every step on a terminal (show), or its text as a
// log line every log_every steps elsewhere (trainer.cpp). The ETA extrapolates this process's
// elapsed time over the epochs left.
class ProgressLine {
 public:
  // `done_before`: the fraction of first_epoch trained before this process (a resume inside it).
  ProgressLine(bool enabled, int64_t first_epoch, int64_t last_epoch, double done_before = 0);
  // After batch `batch` (1-based) of `batches` in `epoch`, step `step` of the run: the epoch's
  // mean loss so far, its throughput, the last gradient norm and learning rate.
  void show(int64_t epoch, size_t batch, size_t batches, int64_t step, double loss,
            double tokens_per_second, double grad_norm, double lr) const;
  // Ends the epoch's line.
  void finish_epoch() const;
  // Erases the line, so that a log line printed inside the epoch stands alone (show() redraws).
  void clear() const;
  // The line show() writes, for a log (no terminal control characters).
  std::string text(int64_t epoch, size_t batch, size_t batches, int64_t step, double loss,
                   double tokens_per_second, double grad_norm, double lr) const;

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  int64_t first_epoch_, last_epoch_;
  double done_before_;
  Clock::time_point start_ = Clock::now();
};

// "epoch 3: train loss ..., valid loss ..., valid BLEU ..., exact ...%, 2.1 s".
std::string epoch_line(const EpochMetrics& m, bool has_validation);

// Appends the metrics as one JSON line to `path` (metrics.jsonl). The file is rewritten
// whole through core's durable_write, so a crash leaves the lines before or after, never half.
void append_metrics_line(const std::string& path, const EpochMetrics& m);

// Keeps the lines of steps <= `last_step` in `path` (metrics.jsonl; nothing to do without the
// file), durably: a resumed run continues after its checkpoint's step, and the steps a crash cut
// short are written once, by the run that redoes them. Errors name the file and line.
void truncate_metrics(const std::string& path, int64_t last_step);

// The lines of metrics.jsonl at `path` (none without the file); errors name the file and line.
std::vector<EpochMetrics> read_metrics(const std::string& path);

// Training and validation loss over the whole run (`history`, as read from metrics.jsonl across
// resumes) against the step, as an SVG at `path` with ticked axes; the validation line only where
// there were validations. Nothing when history is empty.
void write_loss_svg(const std::string& path, const std::vector<EpochMetrics>& history);

}  // namespace kiln::seq2seq
