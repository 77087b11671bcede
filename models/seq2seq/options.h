// TrainOptions: everything a training run is told (data, model, optimization, reporting), and its
// JSON form, stored as a checkpoint's config.json and read from `kiln train --config` files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/seq2seq/config.h"

namespace kiln::seq2seq {

struct TrainOptions {
  // data: a TSV file, or two aligned files, or a generated task
  std::string data, data_source, data_target, task;
  int64_t task_size = 20000;
  int64_t max_pairs = -1;
  bool strict_data = false;  // a bad corpus line is fatal instead of skipped
  int64_t train_pairs = -1, valid_pairs = 0, test_pairs = 0;  // -1 train: all but valid + test
  // the validation share when no size is given (no slice above, and split_valid == -1)
  double valid_fraction = 0.05;
  // A seeded random split, the default when no consecutive slice above is given: split_valid pairs
  // for validation (-1: valid_fraction of the corpus) and split_test for testing, drawn with
  // split_seed and saved as split.json in every checkpoint, so resume and eval see the same one.
  // Absent from config.json files older than random splits: false there, which keeps their
  // consecutive slices (the last valid_fraction as validation).
  bool random_split = true;
  int64_t split_valid = -1, split_test = 0;
  uint64_t split_seed = 1;
  // Validation / test pairs from their own TSV files instead of a split: the corpus all trains.
  std::string data_valid, data_test;
  // > 0: training pairs with more than max_length tokens on either side are dropped (and counted).
  int64_t max_length = -1;
  bool vocab_from_valid = false;  // d2l 1.0 builds the vocabulary from train + valid
  int64_t min_freq = 1, max_vocab = -1;
  std::string tokenizer = "word";  // or "sentencepiece": subwords trained on the training side
  // d2l lowercases everything; kiln keeps the case unless told (the d2l presets are). A
  // config.json without the field comes from before the option, when kiln always lowercased:
  // from_json reads its absence as true.
  bool lowercase = false;
  // The separator before each of , . ! ? in the training targets (data::PunctuationSpacing),
  // learned by prepare() and stored so that translations are detokenized the same way.
  std::map<std::string, std::string> punctuation_spacing;
  int64_t subword_vocab = 4000;  // SentencePiece pieces per side
  int64_t num_steps = -1, batch_size = 64;
  int64_t batch_tokens = 0;  // > 0: batches of about this many target tokens, not batch_size pairs
  // model
  ModelConfig model;
  // optimization
  std::string optimizer = "adam", schedule = "constant";
  double lr = 0.005, weight_decay = 0, momentum = 0.9;
  int64_t warmup = 0, step_size = 1;
  double gamma = 0.5, clip = 1.0, label_smoothing = 0, teacher_forcing = 1.0;
  int64_t epochs = 10;
  // > 0: decay of the exponential moving average of the weights (nn/averaging.h), which
  // validation uses and checkpoints save as the model; 0: off
  double ema = 0;
  uint64_t seed = 1;
  std::string device = "cpu";
  // "f32", or "bf16": the training steps' matrix products take bf16 inputs and accumulate in f32
  // (core/autocast.h); weights, gradients and optimizer state stay f32
  std::string precision = "f32";
  // reporting
  // validation sentences translated (greedy) for BLEU at each validation; -1: all of them
  int64_t bleu_sentences = -1;
  double max_length_a = 1.5, max_length_b = 5;  // decoding length: a * source length + b
  // Longest sentences, in tokens, that training, evaluation and translation feed the model:
  // longer ones are cut to this length with a warning that counts them (an error with
  // strict_data), so no input line can make a step or a decode run without bound.
  int64_t max_source_length = 256, max_target_length = 256;
  std::vector<std::string> sample_sentences;  // translated and printed after training
  // their references for d2l's BLEU (else looked up in the data)
  std::vector<std::string> sample_references;
  bool quiet = false;
  // steps and stopping (trainer.h); a step is one update, of accum_steps batches
  int64_t save_every = 0;        // steps between saves of last/ (0: at epoch ends only)
  int64_t valid_every = 0;       // steps between validations (0: at epoch ends only)
  int64_t keep_checkpoints = 0;  // step-<N> folders kept beside last/ and best/ (newest)
  int64_t max_steps = 0;         // stop (after saving) at this step of the run; 0: no limit
  double max_time = 0;           // stop (after saving) after this many seconds; 0: no limit
  int64_t log_every = 100;       // steps between progress lines when stdout is not a terminal
  int64_t patience = 0;          // stop after this many validations without improvement; 0: never
  std::string early_stop_metric = "loss";  // or "bleu": what best/ and patience go by
  int64_t accum_steps = 1;                 // batches summed into one update
  // Profiling (core/profiler.h): > 0 profiles this many steps after 2 warm-up steps, then logs
  // the table and writes the Chrome trace to profile_out ("": <out>/profile.json); the run goes
  // on. 0: KILN_PROFILE / KILN_PROFILE_OUT decide. Like quiet, these belong to one process: not
  // in config.json, so neither a resumed run nor a --config file profiles unless told again.
  int64_t profile_steps = 0;
  std::string profile_out;
  // --cuda-graph: on a CUDA device, each distinct batch shape's training step is captured into a
  // CUDA graph the second time it is met and replayed from then on (kernels/cuda_graph.h); batch
  // lengths are padded to a multiple of kGraphStepMultiple so that there are few shapes. Like the
  // profile options, this process's choice: not in config.json.
  bool cuda_graph = false;
  static constexpr int64_t kGraphStepMultiple = 8;

  // Throws kiln::Error naming the first invalid option.
  void validate() const;
  std::string to_json() const;
  // Errors name `source` (a file) and the field.
  static TrainOptions from_json(const std::string& text, const std::string& source);
};

// --resume: the checkpoint's options, with each flag of `given` (the flags the command line gave,
// "--lr") taken from `command_line` where it may change (learning rate and schedule, epochs,
// stopping, saving, validation and logging, device) and an error naming the flag and both values
// where it may not (data, split, tokenizer, vocabulary, model shape, optimizer, batch, seed). A
// flag this function does not know is refused too. quiet and the profile options are always the
// command line's. With `given` empty (a library caller), only epochs may grow: the larger of the
// two.
TrainOptions resume_options(const TrainOptions& checkpoint, const TrainOptions& command_line,
                            const std::vector<std::string>& given);
// Whether resume_options() knows `flag` ("--lr"): a test holds every `kiln train` flag to it.
bool resume_knows_flag(const std::string& flag);

}  // namespace kiln::seq2seq
