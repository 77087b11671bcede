// Checkpoint folders (DESIGN.md): model.safetensors (PyTorch names and layouts), config.json,
// source_vocab.txt / target_vocab.txt, split.json when the run split its corpus at random, the
// SentencePiece models when subwords are used, lexical_shortlist.txt (shortlist.h; older
// checkpoints lack it), and optimizer.safetensors and state.json for resume;
// with --ema, model.safetensors holds the averaged weights (what translate, eval and average load)
// and raw_model.safetensors the weights the optimizer trains (for resume). `kiln average` writes a
// folder without the resume files and with averaged.json, naming its sources. A folder is written
// whole into `<dir>.tmp`, every file fsynced, then swapped in (core/durable_file.h,
// durable_write_folder), so a crash leaves either the previous checkpoint or the new one, never a
// mix or a half-written file. This file is the one that knows the folder's layout: both saving and
// the loading done by resume and Translator::load.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "models/data/vocab.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "nn/averaging.h"
#include "nn/optim.h"

namespace kiln::seq2seq {

// Where a run stands (state.json), at an epoch's end or inside an epoch: what resume continues
// from. Old checkpoints, all at epoch ends, lack the fields from epoch_batches on.
struct TrainState {
  int64_t epoch = 0;  // epochs completed
  int64_t steps = 0;  // updates of the whole run (each of accum_steps batches)
  double train_loss = 0, valid_loss = 0;
  double best_valid_loss = std::numeric_limits<double>::infinity();
  uint64_t rng_seed = 0, rng_offset = 0;  // the default generator's, to replay dropout exactly
  int64_t ema_updates = 0;                // the weight average's update count (--ema)
  // Inside epoch `epoch + 1`: the batches already trained (0 at an epoch's end) and the running
  // sums of its mean loss and throughput, so the resumed epoch reports what an uninterrupted one
  // would have.
  int64_t epoch_batches = 0, epoch_tokens = 0;
  double epoch_loss_sum = 0, epoch_seconds = 0;
  // Early stopping: the best validation BLEU and the step of best/, and how many validations in
  // a row did not improve on the best by TrainOptions::early_stop_metric.
  double best_valid_bleu = -1;
  int64_t best_step = 0, bad_validations = 0;
};

// The folder to read the checkpoint `dir` from: `dir`, or the complete new folder a crash left
// in the middle of a swap (durable_folder_current). Every reader goes through this.
std::string checkpoint_folder(const std::string& dir);

// Saves everything resume and Translator::load read back, atomically (above). With `ema`, its
// averages are the model's weights, the model's own go to raw_model.safetensors, and state.json
// records its update count.
void save_checkpoint(const std::string& dir, const TrainOptions& options, const Seq2Seq& model,
                     const nn::Optimizer& optimizer, const Prepared& prepared,
                     const TrainState& state, const nn::ExponentialMovingAverage* ema = nullptr);

// A checkpoint-like folder without weights, optimizer or state (--epochs 0): config.json and the
// vocabularies (and the SentencePiece models), written atomically as save_checkpoint does.
void save_vocabularies(const std::string& dir, const TrainOptions& options,
                       const Prepared& prepared);

// config.json; errors name `op` and the file.
TrainOptions load_checkpoint_options(const std::string& dir, const char* op);
// state.json; errors name the file and the field.
TrainState load_train_state(const std::string& dir);
// The same on the text of a state.json; `path` names it in errors (fuzz/).
TrainState parse_train_state(const std::string& text, const std::string& path);
// split.json, the run's random split (a Prepared::split_record); errors name `op` and the file.
SplitRecord load_checkpoint_split(const std::string& dir, const char* op);
// The same on the text of a split.json; `path` names it in errors.
SplitRecord parse_split_record(const std::string& text, const std::string& path);
// source_vocab.txt and target_vocab.txt.
std::pair<data::Vocab, data::Vocab> load_checkpoint_vocabs(const std::string& dir);
void load_model_weights(const std::string& dir, Seq2Seq& model);
void load_optimizer_state(const std::string& dir, nn::Optimizer& optimizer);
// Resume with --ema: the model's own weights from raw_model.safetensors, the averages from
// model.safetensors, and `updates` (state.json's ema_updates).
void load_ema_weights(const std::string& dir, Seq2Seq& model, nn::ExponentialMovingAverage& ema,
                      int64_t updates);

// `kiln average`: writes into `out` (atomically, as every checkpoint) a checkpoint whose weights
// are the elementwise mean of those of `dirs` (at least two), and which translate and eval load:
// config.json, vocabularies and tokenizers of the first, model.safetensors, and averaged.json
// listing `dirs`. It holds no optimizer or training state: resume from it is refused. The
// checkpoints must have the same config.json model section, tokenizer, vocabulary files and
// SentencePiece models; an error names the folder and what differs. Returns the number of
// weights averaged. One `kiln average` per `out` at a time.
int64_t average_checkpoints(const std::vector<std::string>& dirs, const std::string& out);

}  // namespace kiln::seq2seq
