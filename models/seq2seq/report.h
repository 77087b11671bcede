// What a training run tells people: what it trains on, the live progress line, one summary line
// per epoch, one line of metrics.jsonl per epoch and a loss-curve SVG (loss.svg).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/prepare.h"

namespace kiln::seq2seq {

struct EpochMetrics {
  int64_t epoch = 0, steps = 0;
  double train_loss = 0, valid_loss = 0, valid_bleu = 0, valid_exact = 0, seconds = 0,
         tokens_per_second = 0;
  double lr = 0, grad_norm = 0;
};

// "data: 6000 train / 500 valid / 1500 test pairs; vocab 14 source, 102 target tokens", with
// the pairs --max-length dropped and ", random split (seed S)" when there are any.
std::string data_line(const Prepared& prepared);
// "model: gru 1x128, embed 32, attention bahdanau, 223334 parameters, on cpu".
std::string model_line(const ModelConfig& config, int64_t num_parameters, const Device& device);

// "1h05m" or "3m07s", rounded to the second.
std::string format_duration(double seconds);

// The line rewritten in place after every step, on a terminal only (piped output and logs get
// the epoch lines alone). The ETA extrapolates the run's elapsed time over the epochs left.
class ProgressLine {
 public:
  ProgressLine(bool enabled, int64_t first_epoch, int64_t last_epoch);
  // After step `step` (1-based) of `steps` in `epoch`: the epoch's mean loss so far, its
  // throughput, the last gradient norm and learning rate.
  void show(int64_t epoch, size_t step, size_t steps, double loss, double tokens_per_second,
            double grad_norm, double lr) const;
  // Ends the epoch's line.
  void finish_epoch() const;

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  int64_t first_epoch_, last_epoch_;
  Clock::time_point start_ = Clock::now();
};

// "epoch 3: train loss ..., valid loss ..., valid BLEU ..., exact ...%, 2.1 s".
std::string epoch_line(const EpochMetrics& m, bool has_validation);

// Appends the epoch's metrics as one JSON line to `path` (metrics.jsonl). The file is rewritten
// whole through core's durable_write, so a crash leaves the lines before or after, never half.
void append_metrics_line(const std::string& path, const EpochMetrics& m);

// Keeps the lines of epochs <= `last_epoch` in `path` (metrics.jsonl; nothing to do without the
// file), durably: a resumed run continues after its checkpoint's epoch, and the epochs a crash
// cut short are written once, by the run that redoes them. Errors name the file and line.
void truncate_metrics(const std::string& path, int64_t last_epoch);

// Training and validation loss per epoch as a small SVG at `path` (nothing when history is empty).
void write_loss_svg(const std::string& path, const std::vector<EpochMetrics>& history);

}  // namespace kiln::seq2seq
