// TrainOptions: validation and the JSON form stored in config.json and read from --config files.
#include "models/seq2seq/options.h"

#include "core/device.h"
#include "core/error.h"
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
  KILN_CHECK(lr > 0, "train: lr must be positive, got ", lr);
  KILN_CHECK(clip >= 0, "train: clip must be >= 0 (0 disables), got ", clip);
  KILN_CHECK(teacher_forcing >= 0 && teacher_forcing <= 1,
             "train: teacher forcing must be in [0, 1], got ", teacher_forcing);
  KILN_CHECK(label_smoothing >= 0 && label_smoothing < 1,
             "train: label smoothing must be in [0, 1), got ", label_smoothing);
  KILN_CHECK(
      optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw" || optimizer == "rmsprop",
      "train: optimizer '", optimizer, "' is not one of: sgd, adam, adamw, rmsprop");
  KILN_CHECK(tokenizer == "word" || tokenizer == "sentencepiece", "train: tokenizer '", tokenizer,
             "' is not one of: word, sentencepiece");
  KILN_CHECK(tokenizer == "word" || subword_vocab > 4,
             "train: subword vocabulary must be > 4, got ", subword_vocab);
  KILN_CHECK(schedule == "constant" || schedule == "step" || schedule == "inverse-sqrt" ||
                 schedule == "cosine",
             "train: schedule '", schedule,
             "' is not one of: constant, step, inverse-sqrt, cosine");
  Device::parse(device);
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
                      {"vocab_from_valid", vocab_from_valid},
                      {"min_freq", min_freq},
                      {"max_vocab", max_vocab},
                      {"tokenizer", tokenizer},
                      {"subword_vocab", subword_vocab},
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
                      {"seed", seed},
                      {"device", device},
                      {"bleu_sentences", bleu_sentences},
                      {"max_length_a", max_length_a},
                      {"max_length_b", max_length_b},
                      {"sample_sentences", sample_sentences},
                      {"sample_references", sample_references}};
  return j.dump(2);
}

TrainOptions TrainOptions::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j = parse_json_object(text, source);
  TrainOptions o;
  try {
    o.data = j.value("data", o.data);
    o.data_source = j.value("data_src", o.data_source);
    o.data_target = j.value("data_tgt", o.data_target);
    o.task = j.value("task", o.task);
    o.task_size = json_int64_or(j, "task_size", o.task_size, source);
    o.max_pairs = json_int64_or(j, "max_pairs", o.max_pairs, source);
    o.strict_data = j.value("strict_data", o.strict_data);
    o.train_pairs = json_int64_or(j, "train_pairs", o.train_pairs, source);
    o.valid_pairs = json_int64_or(j, "valid_pairs", o.valid_pairs, source);
    o.test_pairs = json_int64_or(j, "test_pairs", o.test_pairs, source);
    o.valid_fraction = j.value("valid_fraction", o.valid_fraction);
    o.vocab_from_valid = j.value("vocab_from_valid", o.vocab_from_valid);
    o.min_freq = json_int64_or(j, "min_freq", o.min_freq, source);
    o.max_vocab = json_int64_or(j, "max_vocab", o.max_vocab, source);
    o.tokenizer = j.value("tokenizer", o.tokenizer);
    o.subword_vocab = json_int64_or(j, "subword_vocab", o.subword_vocab, source);
    o.num_steps = json_int64_or(j, "num_steps", o.num_steps, source);
    o.batch_size = json_int64_or(j, "batch", o.batch_size, source);
    if (j.contains("model"))
      o.model = ModelConfig::from_json(j.at("model").dump(), source + " (model)");
    o.optimizer = j.value("optimizer", o.optimizer);
    o.schedule = j.value("schedule", o.schedule);
    o.lr = j.value("lr", o.lr);
    o.weight_decay = j.value("weight_decay", o.weight_decay);
    o.momentum = j.value("momentum", o.momentum);
    o.warmup = json_int64_or(j, "warmup", o.warmup, source);
    o.step_size = json_int64_or(j, "step_size", o.step_size, source);
    o.gamma = j.value("gamma", o.gamma);
    o.clip = j.value("clip", o.clip);
    o.label_smoothing = j.value("label_smoothing", o.label_smoothing);
    o.teacher_forcing = j.value("teacher_forcing", o.teacher_forcing);
    o.epochs = json_int64_or(j, "epochs", o.epochs, source);
    o.seed = json_uint64_or(j, "seed", o.seed, source);
    o.device = j.value("device", o.device);
    o.bleu_sentences = json_int64_or(j, "bleu_sentences", o.bleu_sentences, source);
    o.max_length_a = j.value("max_length_a", o.max_length_a);
    o.max_length_b = j.value("max_length_b", o.max_length_b);
    o.sample_sentences = j.value("sample_sentences", o.sample_sentences);
    o.sample_references = j.value("sample_references", o.sample_references);
  } catch (const nlohmann::json::exception& e) {
    KILN_FAIL(source, ": ", e.what());
  }
  return o;
}

}  // namespace kiln::seq2seq
