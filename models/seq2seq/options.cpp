// TrainOptions: validation and the JSON form stored in config.json and read from --config files.
#include "models/seq2seq/options.h"

#include <algorithm>
#include <cmath>

#include "core/device.h"
#include "core/error.h"
#include "models/data/tokenizer.h"
#include "models/seq2seq/json_util.h"

namespace kiln::seq2seq {

void TrainOptions::validate() const {
  int sources = !data.empty() + !task.empty() + (!data_source.empty() || !data_target.empty());
  KILN_CHECK(sources == 1,
             "train: give exactly one of --data (TSV), --data-src with --data-tgt, or --task");
  KILN_CHECK(data_source.empty() == data_target.empty(),
             "train: --data-src and --data-tgt go together");
  KILN_CHECK(batch_size > 0, "train: batch size must be positive, got ", batch_size);
  KILN_CHECK(num_steps == -1 || num_steps > 1, "train: num_steps must be -1 (dynamic) or > 1, got ",
             num_steps);
  KILN_CHECK(epochs >= 0, "train: epochs must be >= 0, got ", epochs);
  KILN_CHECK(task.empty() || task_size > 0, "train: task size must be positive, got ", task_size);
  KILN_CHECK(max_pairs >= -1, "train: max_pairs must be -1 (all) or >= 0, got ", max_pairs);
  KILN_CHECK(train_pairs >= -1 && valid_pairs >= 0 && test_pairs >= 0,
             "train: train_pairs must be >= -1 (the rest), valid_pairs and test_pairs >= 0, got ",
             train_pairs, ", ", valid_pairs, ", ", test_pairs);
  KILN_CHECK(split_valid >= -1 && split_test >= 0,
             "train: split_valid must be >= -1 (-1: valid_fraction) and split_test >= 0, got ",
             split_valid, " and ", split_test);
  const bool slices = train_pairs != -1 || valid_pairs != 0 || test_pairs != 0;
  const bool split_sizes = split_valid != -1 || split_test != 0;
  const bool split_files = !data_valid.empty() || !data_test.empty();
  KILN_CHECK(!(split_sizes && slices),
             "train: --split-valid/--split-test (a seeded random split) cannot be combined with ",
             "--train-pairs/--valid-pairs/--test-pairs (consecutive slices, also set by the d2l ",
             "presets); give one or the other");
  KILN_CHECK(
      !split_files || !(split_sizes || slices),
      "train: --data-valid/--data-test (separate files, the corpus all trains) cannot be ",
      "combined with --split-valid/--split-test or --train-pairs/--valid-pairs/--test-pairs");
  KILN_CHECK(random_split || !split_sizes,
             "train: split_valid and split_test need random_split true");
  KILN_CHECK(max_length == -1 || max_length > 0,
             "train: max_length must be -1 (no filter) or > 0, got ", max_length);
  KILN_CHECK(batch_tokens >= 0, "train: batch_tokens must be >= 0 (0: batches of batch_size ",
             "pairs), got ", batch_tokens);
  KILN_CHECK(valid_fraction >= 0 && valid_fraction < 1,
             "train: valid_fraction must be in [0, 1), got ", valid_fraction);
  KILN_CHECK(min_freq >= 1, "train: min_freq must be >= 1, got ", min_freq);
  KILN_CHECK(max_vocab == -1 || max_vocab > 4,
             "train: max_vocab must be -1 (no cap) or > 4 (the reserved tokens), got ", max_vocab);
  KILN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0,
             "train: weight decay must be a finite number >= 0, got ", weight_decay);
  KILN_CHECK(std::isfinite(momentum) && momentum >= 0,
             "train: momentum must be a finite number >= 0, got ", momentum);
  KILN_CHECK(std::isfinite(gamma) && gamma > 0, "train: gamma must be a finite number > 0, got ",
             gamma);
  KILN_CHECK(warmup >= 0 && step_size > 0, "train: warmup must be >= 0 and step_size > 0, got ",
             warmup, " and ", step_size);
  KILN_CHECK(bleu_sentences >= -1, "train: bleu_sentences must be -1 (all) or >= 0, got ",
             bleu_sentences);
  KILN_CHECK(save_every >= 0 && valid_every >= 0 && keep_checkpoints >= 0 && max_steps >= 0 &&
                 patience >= 0,
             "train: save_every, valid_every, keep_checkpoints, max_steps and patience must be >= "
             "0, got ",
             save_every, ", ", valid_every, ", ", keep_checkpoints, ", ", max_steps, ", ",
             patience);
  KILN_CHECK(std::isfinite(max_time) && max_time >= 0,
             "train: max_time must be a finite number of seconds >= 0, got ", max_time);
  KILN_CHECK(log_every > 0 && accum_steps > 0,
             "train: log_every and accum_steps must be positive, got ", log_every, " and ",
             accum_steps);
  KILN_CHECK(profile_steps >= 0, "train: --profile must be >= 0 (steps to profile; 0: off), got ",
             profile_steps);
  KILN_CHECK(early_stop_metric == "loss" || early_stop_metric == "bleu",
             "train: early_stop_metric '", early_stop_metric, "' is not one of: loss, bleu");
  KILN_CHECK(std::isfinite(max_length_a) && max_length_a >= 0 && std::isfinite(max_length_b) &&
                 max_length_b >= 0,
             "train: max_length_a and max_length_b must be finite numbers >= 0, got ", max_length_a,
             " and ", max_length_b);
  KILN_CHECK(max_source_length > 0 && max_target_length > 0,
             "train: max_source_length and max_target_length must be positive, got ",
             max_source_length, " and ", max_target_length);
  KILN_CHECK(std::isfinite(lr) && lr > 0, "train: lr must be a finite number > 0, got ", lr);
  KILN_CHECK(clip >= 0, "train: clip must be >= 0 (0 disables), got ", clip);
  KILN_CHECK(ema == 0 || (ema > 0 && ema < 1),
             "train: ema decay must be in (0, 1), e.g. 0.999 (0: no averaging), got ", ema);
  KILN_CHECK(teacher_forcing >= 0 && teacher_forcing <= 1,
             "train: teacher forcing must be in [0, 1], got ", teacher_forcing);
  KILN_CHECK(label_smoothing >= 0 && label_smoothing < 1,
             "train: label smoothing must be in [0, 1), got ", label_smoothing);
  KILN_CHECK(
      optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw" || optimizer == "rmsprop",
      "train: optimizer '", optimizer, "' is not one of: sgd, adam, adamw, rmsprop");
  KILN_CHECK(tokenizer == "word" || tokenizer == "sentencepiece", "train: tokenizer '", tokenizer,
             "' is not one of: word, sentencepiece");
  for (const auto& [mark, separator] : punctuation_spacing) {
    KILN_CHECK((mark == "," || mark == "." || mark == "!" || mark == "?") &&
                   data::is_punctuation_separator(separator),
               "train: punctuation_spacing: '", mark, "' -> '", separator,
               "' is not one of , . ! ? -> \"\", \" \", U+202F or U+00A0");
  }
  KILN_CHECK(tokenizer == "word" || subword_vocab > 4,
             "train: subword vocabulary must be > 4, got ", subword_vocab);
  KILN_CHECK(schedule == "constant" || schedule == "step" || schedule == "inverse-sqrt" ||
                 schedule == "cosine",
             "train: schedule '", schedule,
             "' is not one of: constant, step, inverse-sqrt, cosine");
  Device::parse(device);
  KILN_CHECK(precision == "f32" || precision == "bf16", "train: precision '", precision,
             "' is not one of: f32, bf16");
  if (cuda_graph) {
    KILN_CHECK(Device::parse(device).is_cuda(), "train: --cuda-graph needs a CUDA device ",
               "(--device cuda:N): a CUDA graph is captured and replayed on a GPU; this run is on ",
               device);
    KILN_CHECK(accum_steps == 1, "train: --cuda-graph takes one batch per step; --accum-steps ",
               accum_steps, " is not supported with it");
    KILN_CHECK(teacher_forcing == 1.0, "train: --cuda-graph needs --teacher-forcing 1: scheduled ",
               "sampling (", teacher_forcing, ") reads each step's predictions back to the host");
  }
}

std::string TrainOptions::to_json() const {
  nlohmann::json j = {{"data", data},
                      {"data_src", data_source},
                      {"data_tgt", data_target},
                      {"task", task},
                      {"task_size", task_size},
                      {"max_pairs", max_pairs},
                      {"strict_data", strict_data},
                      {"train_pairs", train_pairs},
                      {"valid_pairs", valid_pairs},
                      {"test_pairs", test_pairs},
                      {"valid_fraction", valid_fraction},
                      {"random_split", random_split},
                      {"split_valid", split_valid},
                      {"split_test", split_test},
                      {"split_seed", split_seed},
                      {"data_valid", data_valid},
                      {"data_test", data_test},
                      {"max_length", max_length},
                      {"batch_tokens", batch_tokens},
                      {"vocab_from_valid", vocab_from_valid},
                      {"min_freq", min_freq},
                      {"max_vocab", max_vocab},
                      {"tokenizer", tokenizer},
                      {"subword_vocab", subword_vocab},
                      {"lowercase", lowercase},
                      {"punctuation_spacing", punctuation_spacing},
                      {"num_steps", num_steps},
                      {"batch", batch_size},
                      {"model", nlohmann::json::parse(model.to_json())},
                      {"optimizer", optimizer},
                      {"schedule", schedule},
                      {"lr", lr},
                      {"weight_decay", weight_decay},
                      {"momentum", momentum},
                      {"warmup", warmup},
                      {"step_size", step_size},
                      {"gamma", gamma},
                      {"clip", clip},
                      {"label_smoothing", label_smoothing},
                      {"teacher_forcing", teacher_forcing},
                      {"epochs", epochs},
                      {"ema", ema},
                      {"seed", seed},
                      {"device", device},
                      {"precision", precision},
                      {"bleu_sentences", bleu_sentences},
                      {"max_length_a", max_length_a},
                      {"max_length_b", max_length_b},
                      {"max_source_length", max_source_length},
                      {"max_target_length", max_target_length},
                      {"sample_sentences", sample_sentences},
                      {"sample_references", sample_references},
                      {"save_every", save_every},
                      {"valid_every", valid_every},
                      {"keep_checkpoints", keep_checkpoints},
                      {"max_steps", max_steps},
                      {"max_time", max_time},
                      {"log_every", log_every},
                      {"patience", patience},
                      {"early_stop_metric", early_stop_metric},
                      {"accum_steps", accum_steps}};
  return j.dump(2);
}

TrainOptions TrainOptions::from_json(const std::string& text, const std::string& source) {
  JsonReader r(text, source);
  TrainOptions o;
  o.data = r.string("data", o.data);
  o.data_source = r.string("data_src", o.data_source);
  o.data_target = r.string("data_tgt", o.data_target);
  o.task = r.string("task", o.task);
  o.task_size = r.integer("task_size", o.task_size);
  o.max_pairs = r.integer("max_pairs", o.max_pairs);
  o.strict_data = r.boolean("strict_data", o.strict_data);
  o.train_pairs = r.integer("train_pairs", o.train_pairs);
  o.valid_pairs = r.integer("valid_pairs", o.valid_pairs);
  o.test_pairs = r.integer("test_pairs", o.test_pairs);
  o.valid_fraction = r.number("valid_fraction", o.valid_fraction);
  // Absent: a config from before random splits, unless it asks for one by its sizes.
  o.random_split = r.boolean("random_split", r.has("split_valid") || r.has("split_test"));
  o.split_valid = r.integer("split_valid", o.split_valid);
  o.split_test = r.integer("split_test", o.split_test);
  o.split_seed = r.unsigned_integer("split_seed", o.split_seed);
  o.data_valid = r.string("data_valid", o.data_valid);
  o.data_test = r.string("data_test", o.data_test);
  o.max_length = r.integer("max_length", o.max_length);
  o.batch_tokens = r.integer("batch_tokens", o.batch_tokens);
  o.vocab_from_valid = r.boolean("vocab_from_valid", o.vocab_from_valid);
  o.min_freq = r.integer("min_freq", o.min_freq);
  o.max_vocab = r.integer("max_vocab", o.max_vocab);
  o.tokenizer = r.string("tokenizer", o.tokenizer);
  o.subword_vocab = r.integer("subword_vocab", o.subword_vocab);
  o.lowercase = r.boolean("lowercase", true);  // absent: a run from when kiln always lowercased
  if (r.has("punctuation_spacing")) {
    JsonReader spacing = r.object("punctuation_spacing");
    for (const char* mark : {",", ".", "!", "?"}) {
      if (spacing.has(mark)) o.punctuation_spacing[mark] = spacing.string(mark);
    }
    spacing.reject_unknown_fields();
  }
  o.num_steps = r.integer("num_steps", o.num_steps);
  o.batch_size = r.integer("batch", o.batch_size);
  if (r.has("model")) o.model = ModelConfig::from_json(r.object("model"), source);
  o.optimizer = r.string("optimizer", o.optimizer);
  o.schedule = r.string("schedule", o.schedule);
  o.lr = r.number("lr", o.lr);
  o.weight_decay = r.number("weight_decay", o.weight_decay);
  o.momentum = r.number("momentum", o.momentum);
  o.warmup = r.integer("warmup", o.warmup);
  o.step_size = r.integer("step_size", o.step_size);
  o.gamma = r.number("gamma", o.gamma);
  o.clip = r.number("clip", o.clip);
  o.label_smoothing = r.number("label_smoothing", o.label_smoothing);
  o.teacher_forcing = r.number("teacher_forcing", o.teacher_forcing);
  o.epochs = r.integer("epochs", o.epochs);
  o.ema = r.number("ema", o.ema);
  o.seed = r.unsigned_integer("seed", o.seed);
  o.device = r.string("device", o.device);
  o.precision = r.string("precision", o.precision);
  o.bleu_sentences = r.integer("bleu_sentences", o.bleu_sentences);
  o.max_length_a = r.number("max_length_a", o.max_length_a);
  o.max_length_b = r.number("max_length_b", o.max_length_b);
  o.max_source_length = r.integer("max_source_length", o.max_source_length);
  o.max_target_length = r.integer("max_target_length", o.max_target_length);
  o.sample_sentences = r.strings("sample_sentences", o.sample_sentences);
  o.sample_references = r.strings("sample_references", o.sample_references);
  o.save_every = r.integer("save_every", o.save_every);
  o.valid_every = r.integer("valid_every", o.valid_every);
  o.keep_checkpoints = r.integer("keep_checkpoints", o.keep_checkpoints);
  o.max_steps = r.integer("max_steps", o.max_steps);
  o.max_time = r.number("max_time", o.max_time);
  o.log_every = r.integer("log_every", o.log_every);
  o.patience = r.integer("patience", o.patience);
  o.early_stop_metric = r.string("early_stop_metric", o.early_stop_metric);
  o.accum_steps = r.integer("accum_steps", o.accum_steps);
  r.reject_unknown_fields();
  return o;
}

namespace {

// A command-line flag as resume sees it: where its value sits in config.json (a JSON pointer),
// and whether a resumed run may take a new value. Changing the data, the split, the tokenizer or
// vocabulary, the model's shape, the optimizer, the batch or the seed would not continue the run
// in the checkpoint but start another one from its weights.
struct ResumeFlag {
  const char* flag;
  const char* pointer;
  bool may_change;
};

const ResumeFlag kResumeFlags[] = {
    {"--data", "/data", false},
    {"--data-src", "/data_src", false},
    {"--data-tgt", "/data_tgt", false},
    {"--task", "/task", false},
    {"--task-size", "/task_size", false},
    {"--max-pairs", "/max_pairs", false},
    {"--strict", "/strict_data", false},
    {"--seed", "/seed", false},
    {"--device", "/device", true},
    {"--precision", "/precision", true},
    {"--cell", "/model/cell", false},
    {"--attention", "/model/attention", false},
    {"--bidirectional", "/model/bidirectional", false},
    {"--embed", "/model/embed_size", false},
    {"--hidden", "/model/hidden_size", false},
    {"--layers", "/model/num_layers", false},
    {"--dropout", "/model/dropout", true},
    {"--optimizer", "/optimizer", false},
    {"--lr", "/lr", true},
    {"--weight-decay", "/weight_decay", true},
    {"--schedule", "/schedule", true},
    {"--warmup", "/warmup", true},
    {"--clip", "/clip", true},
    {"--epochs", "/epochs", true},
    {"--batch", "/batch", false},
    {"--num-steps", "/num_steps", false},
    {"--label-smoothing", "/label_smoothing", true},
    {"--teacher-forcing", "/teacher_forcing", true},
    {"--tokenizer", "/tokenizer", false},
    {"--lowercase", "/lowercase", false},  // also --keep-case, its negation
    {"--subword-vocab", "/subword_vocab", false},
    {"--min-freq", "/min_freq", false},
    {"--max-vocab", "/max_vocab", false},
    {"--train-pairs", "/train_pairs", false},
    {"--valid-pairs", "/valid_pairs", false},
    {"--test-pairs", "/test_pairs", false},
    {"--split-valid", "/split_valid", false},
    {"--split-test", "/split_test", false},
    {"--split-seed", "/split_seed", false},
    {"--data-valid", "/data_valid", false},
    {"--data-test", "/data_test", false},
    {"--max-length", "/max_length", false},
    {"--batch-tokens", "/batch_tokens", false},
    {"--ema", "/ema", false},
    {"--bleu-sentences", "/bleu_sentences", true},
    {"--max-source-length", "/max_source_length", false},
    {"--max-target-length", "/max_target_length", false},
    {"--save-every", "/save_every", true},
    {"--valid-every", "/valid_every", true},
    {"--keep-checkpoints", "/keep_checkpoints", true},
    {"--max-steps", "/max_steps", true},
    {"--max-time", "/max_time", true},
    {"--log-every", "/log_every", true},
    {"--patience", "/patience", true},
    {"--early-stop-metric", "/early_stop_metric", true},
    {"--accum-steps", "/accum_steps", false},
};

// What only the command line has: where the run goes, how it prints, what it profiles and its
// CPU threads (--threads, applied by the CLI itself).
bool command_line_only(const std::string& flag) {
  return flag == "--resume" || flag == "--out" || flag == "--quiet" || flag == "--profile" ||
         flag == "--profile-out" || flag == "--threads" || flag == "--cuda-graph";
}

// The options of this process alone (command_line_only), from the command line.
void take_process_options(TrainOptions& o, const TrainOptions& command_line) {
  o.quiet = command_line.quiet;
  o.profile_steps = command_line.profile_steps;
  o.profile_out = command_line.profile_out;
  o.cuda_graph = command_line.cuda_graph;
}

}  // namespace

bool resume_knows_flag(const std::string& flag) {
  if (command_line_only(flag)) return true;
  for (const ResumeFlag& f : kResumeFlags) {
    if (flag == f.flag) return true;
  }
  return false;
}

TrainOptions resume_options(const TrainOptions& checkpoint, const TrainOptions& command_line,
                            const std::vector<std::string>& given) {
  if (given.empty()) {
    TrainOptions o = checkpoint;
    o.epochs = std::max(command_line.epochs, checkpoint.epochs);
    take_process_options(o, command_line);
    return o;
  }
  nlohmann::json merged = nlohmann::json::parse(checkpoint.to_json());
  const nlohmann::json wanted = nlohmann::json::parse(command_line.to_json());
  for (const std::string& flag : given) {
    if (command_line_only(flag)) continue;
    const ResumeFlag* known = nullptr;
    for (const ResumeFlag& f : kResumeFlags) {
      if (flag == f.flag) known = &f;
    }
    KILN_CHECK(known, "train: ", flag,
               " cannot be given with --resume (the checkpoint's options are used; give single "
               "flags to change the ones that may change)");
    nlohmann::json::json_pointer at(known->pointer);
    if (merged.at(at) == wanted.at(at)) continue;
    KILN_CHECK(known->may_change, "train: ", flag,
               " cannot change on --resume: the checkpoint has ", merged.at(at).dump(),
               ", the command line ", wanted.at(at).dump(),
               " (leave the flag out to continue the run, or start a new run)");
    merged[at] = wanted.at(at);
  }
  TrainOptions o = TrainOptions::from_json(merged.dump(), "--resume");
  take_process_options(o, command_line);
  return o;
}

}  // namespace kiln::seq2seq
