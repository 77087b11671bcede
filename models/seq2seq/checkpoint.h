// Checkpoint folders (DESIGN.md): model.safetensors (PyTorch names and layouts), config.json,
// source_vocab.txt / target_vocab.txt, split.json when the run split its corpus at random, the
// SentencePiece models when subwords are used, and optimizer.safetensors and state.json for resume.
// A folder is written whole into `<dir>.tmp`, every file fsynced, then swapped in
// (core/durable_file.h, durable_write_folder), so a crash leaves either the previous checkpoint or
// the new one, never a mix or a half-written file. This file is the one that knows the folder's
// layout: both saving and the loading done by resume and Translator::load.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "models/data/vocab.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "nn/optim.h"

namespace kiln::seq2seq {

// Where a run stands after an epoch (state.json): what resume continues from.
struct TrainState {
  int64_t epoch = 0, steps = 0;
  double train_loss = 0, valid_loss = 0;
  double best_valid_loss = std::numeric_limits<double>::infinity();
  uint64_t rng_seed = 0, rng_offset = 0;  // the default generator's, to replay dropout exactly
};

// The folder to read the checkpoint `dir` from: `dir`, or the complete new folder a crash left
// in the middle of a swap (durable_folder_current). Every reader goes through this.
std::string checkpoint_folder(const std::string& dir);

// Saves everything resume and Translator::load read back, atomically (above).
void save_checkpoint(const std::string& dir, const TrainOptions& options, const Seq2Seq& model,
                     const nn::Optimizer& optimizer, const Prepared& prepared,
                     const TrainState& state);

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

}  // namespace kiln::seq2seq
