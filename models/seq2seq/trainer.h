// Training a Seq2Seq translator: the epoch and step loop (teacher forcing or scheduled sampling,
// masked CE with label smoothing, clipping, optimizer and LR schedule, dropout), validation loss
// and BLEU per epoch, checkpoints (last and best) and exact resume. The data side is prepare.h,
// what a run prints and writes about itself is report.h, the folders are checkpoint.h. The `kiln`
// CLI (examples/kiln.cpp) is a thin layer of flags over this.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "models/seq2seq/options.h"
#include "models/seq2seq/report.h"

namespace kiln::seq2seq {

// Trains into `out_dir` (out_dir/last, out_dir/best, metrics.jsonl, loss.svg), which this run
// holds alone (run_folder.h). With resume_dir, continues from that checkpoint (its options,
// vocabularies, weights, optimizer and RNG state), and metrics.jsonl keeps only the epochs up to
// the checkpoint's; without it, out_dir must be empty unless `overwrite`, which replaces the run
// there once the new one has loaded its data. `log` receives every line printed. Returns the
// metrics of every epoch run: none when there is nothing to train (the resumed run is already
// complete, or --epochs 0), which `log` is told.
std::vector<EpochMetrics> train(const TrainOptions& options, const std::string& out_dir,
                                const std::string& resume_dir = "",
                                const std::function<void(const std::string&)>& log = nullptr,
                                bool overwrite = false);

}  // namespace kiln::seq2seq
