// Training a Seq2Seq translator: the epoch and step loop (teacher forcing or scheduled sampling,
// masked CE with label smoothing, gradient accumulation, clipping, optimizer and LR schedule,
// dropout), validation loss and BLEU, checkpoints (last, best, step-numbered), early stopping,
// step and time limits, and exact resume, also from inside an epoch. The data side is prepare.h,
// what a run prints and writes about itself is report.h, the folders are checkpoint.h. The `kiln`
// CLI (examples/kiln.cpp) is a thin layer of flags over this.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dist/data_parallel.h"
#include "models/data/batching.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/report.h"

namespace kiln::seq2seq {

// Trains into `out_dir` (out_dir/last, out_dir/best, step-<N> folders with keep_checkpoints,
// metrics.jsonl, loss.svg), which this run holds alone (run_folder.h). A step is one update of
// accum_steps batches. Validation runs every valid_every steps and at every epoch's end; last/ is
// saved every save_every steps, at every epoch's end and when the run stops early (max_steps,
// max_time, patience), so a kill loses at most save_every steps. best/ is the best validation by
// early_stop_metric (without validation data, the latest epoch's end).
//
// With resume_dir, continues from that checkpoint (its options as resume_options() merges them
// with `options` and the command line's `flags_given`, its vocabularies, weights, optimizer, RNG
// state and place in the epoch: the next batch is the one an uninterrupted run would train next,
// with the same random numbers), and metrics.jsonl keeps only the lines up to the checkpoint's
// step. Without it, out_dir must be empty unless `overwrite`, which replaces the run there once
// the new one has loaded its data. With epochs 0 and no resume_dir, prepares the data and writes
// the vocabularies (out_dir/vocab, a checkpoint without weights) and stops. `log` receives every
// line printed. Returns every metrics line written (each validation and epoch end), and at a stop
// between them the training metrics of the epoch so far; none when there is nothing to train,
// which `log` is told.
std::vector<EpochMetrics> train(const TrainOptions& options, const std::string& out_dir,
                                const std::string& resume_dir = "",
                                const std::function<void(const std::string&)>& log = nullptr,
                                bool overwrite = false,
                                const std::vector<std::string>& flags_given = {});

// The forward and backward passes of one update over `batches` (their gradients accumulate into
// the parameters' .grad): each batch's mean loss per target token weighted by its share of all
// their target tokens, so the gradients are those of the mean over every real target token of
// the group, as if it were one batch. Returns that mean as a device scalar (nothing is read back).
//
// Data parallelism: with `dp`, `batches` are this rank's shares of the step's global batches (a
// share without tensors is one this rank has no column of), which hold `global_tokens` real target
// tokens together over all ranks. Each share is weighted by its tokens over that global count, and
// the last backward goes through dp (ReduceOp::sum), so every rank is left with the gradient of the
// mean over the whole global group, as one rank computes it. Returns this rank's part of that mean
// (the parts sum to it).
// fixed_shapes: the work is being captured into a CUDA graph (HostCopies::fixed_shapes).
Tensor accumulate_gradients(const Seq2Seq& model, const std::vector<const data::Batch*>& batches,
                            double label_smoothing, double teacher_forcing,
                            dist::DataParallel* dp = nullptr, int64_t global_tokens = 0,
                            bool fixed_shapes = false);

}  // namespace kiln::seq2seq
