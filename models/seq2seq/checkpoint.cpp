// Checkpoint folders: writing one atomically, and reading its parts back (see checkpoint.h).
// Every file and the folder swap go through core/durable_file.h.
#include "models/seq2seq/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/durable_file.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/seq2seq/json_util.h"

namespace kiln::seq2seq {

namespace fs = std::filesystem;

std::string checkpoint_folder(const std::string& dir) { return durable_folder_current(dir); }

namespace {

std::string state_json(const TrainState& s) {
  nlohmann::json j = {{"epoch", s.epoch},
                      {"steps", s.steps},
                      {"train_loss", s.train_loss},
                      {"valid_loss", s.valid_loss},
                      {"rng_seed", s.rng_seed},
                      {"rng_offset", s.rng_offset},
                      {"best_valid_loss", s.best_valid_loss},
                      {"ema_updates", s.ema_updates},
                      {"epoch_batches", s.epoch_batches},
                      {"epoch_tokens", s.epoch_tokens},
                      {"epoch_loss_sum", s.epoch_loss_sum},
                      {"epoch_seconds", s.epoch_seconds},
                      {"best_valid_bleu", s.best_valid_bleu},
                      {"best_step", s.best_step},
                      {"bad_validations", s.bad_validations}};
  return j.dump(2);
}

std::string split_json(const SplitRecord& r) {
  nlohmann::json j = {{"corpus", r.corpus},    {"bytes", r.bytes},
                      {"pairs", r.pairs},      {"fingerprint", r.fingerprint},
                      {"seed", r.seed},        {"valid", r.indices.valid},
                      {"test", r.indices.test}};
  return j.dump();  // one line: the index lists are long
}

// The subword models travel with the checkpoint, so Translator::load needs nothing else.
void copy_tokenizers(const std::string& from, const std::string& to) {
  for (const char* model : {"/source.spm.model", "/target.spm.model"}) {
    try {
      fs::copy_file(from + model, to + model);
      durable_sync(to + model, "save_checkpoint");
    } catch (const fs::filesystem_error& e) {
      KILN_FAIL("save_checkpoint: ", e.what());
    }
  }
}

// What a checkpoint and a vocabulary folder share: config.json, the vocabularies, the subword
// models, the random split, the lexical table of the shortlist.
void write_vocabularies(const std::string& tmp, const TrainOptions& options,
                        const Prepared& prepared) {
  durable_write(tmp + "/config.json", options.to_json(), "save_checkpoint");
  prepared.source_vocab.save(tmp + "/source_vocab.txt");
  prepared.target_vocab.save(tmp + "/target_vocab.txt");
  if (!prepared.tokenizer_dir.empty()) copy_tokenizers(prepared.tokenizer_dir, tmp);
  if (prepared.split_record) {
    durable_write(tmp + "/split.json", split_json(*prepared.split_record), "save_checkpoint");
  }
  if (!prepared.lexical.empty()) prepared.lexical.save(tmp);
}

}  // namespace

void save_checkpoint(const std::string& dir, const TrainOptions& options, const Seq2Seq& model,
                     const nn::Optimizer& optimizer, const Prepared& prepared,
                     const TrainState& state, const nn::ExponentialMovingAverage* ema) {
  const char* op = "save_checkpoint";
  TrainState saved = state;
  saved.ema_updates = ema ? ema->num_updates() : 0;
  durable_write_folder(
      dir,
      [&](const std::string& tmp) {
        // With --ema, what translates is the average; resume needs the model's own weights too.
        safetensors::save(tmp + "/model.safetensors", ema ? ema->state_dict() : model.state_dict(),
                          {{"format", "pt"}});
        if (ema) {
          safetensors::save(tmp + "/raw_model.safetensors", model.state_dict(), {{"format", "pt"}});
        }
        safetensors::save(tmp + "/optimizer.safetensors", optimizer.state_dict());
        write_vocabularies(tmp, options, prepared);
        durable_write(tmp + "/state.json", state_json(saved), op);
      },
      op);
}

void save_vocabularies(const std::string& dir, const TrainOptions& options,
                       const Prepared& prepared) {
  durable_write_folder(
      dir, [&](const std::string& tmp) { write_vocabularies(tmp, options, prepared); },
      "save_vocabularies");
}

TrainOptions load_checkpoint_options(const std::string& dir, const char* op) {
  std::string path = dir + "/config.json";
  TrainOptions options = TrainOptions::from_json(data::read_text_file(op, path), path);
  try {
    options.validate();
  } catch (const Error& e) {
    KILN_FAIL(path, ": ", e.what());
  }
  return options;
}

TrainState load_train_state(const std::string& dir) {
  std::string path = dir + "/state.json";
  std::error_code ec;
  KILN_CHECK(
      fs::exists(path, ec) || !fs::exists(dir + "/averaged.json", ec), "resume: ", dir,
      " is an average of checkpoints (kiln average; its averaged.json names them): it holds ",
      "weights for translate and eval, but no optimizer or training state to resume; resume ",
      "from one of the checkpoints it averages");
  return parse_train_state(data::read_text_file("resume", path), path);
}

TrainState parse_train_state(const std::string& text, const std::string& path) {
  JsonReader r(text, path);
  TrainState s;
  s.epoch = r.integer("epoch", std::nullopt, 0);
  s.steps = r.integer("steps", 0, 0);
  // Informative only: resume does not need them, and a diverged loss is written as null.
  s.train_loss = r.number("train_loss", 0.0);
  s.valid_loss = r.number("valid_loss", 0.0);
  s.best_valid_loss = r.number("best_valid_loss", s.best_valid_loss);
  s.rng_seed = r.unsigned_integer("rng_seed");
  s.rng_offset = r.unsigned_integer("rng_offset");
  s.ema_updates = r.integer("ema_updates", 0, 0);
  s.epoch_batches = r.integer("epoch_batches", 0, 0);
  s.epoch_tokens = r.integer("epoch_tokens", 0, 0);
  s.epoch_loss_sum = r.number("epoch_loss_sum", 0.0);
  s.epoch_seconds = r.number("epoch_seconds", 0.0, 0.0);
  s.best_valid_bleu = r.number("best_valid_bleu", s.best_valid_bleu);
  s.best_step = r.integer("best_step", 0, 0);
  s.bad_validations = r.integer("bad_validations", 0, 0);
  r.reject_unknown_fields();
  return s;
}

SplitRecord load_checkpoint_split(const std::string& dir, const char* op) {
  std::string path = dir + "/split.json";
  KILN_CHECK(fs::exists(path), op, ": ", path, " is missing: the run split its corpus at random ",
             "and the checkpoint no longer says how");
  return parse_split_record(data::read_text_file(op, path), path);
}

SplitRecord parse_split_record(const std::string& text, const std::string& path) {
  JsonReader r(text, path);
  SplitRecord s;
  s.corpus = r.string("corpus");
  s.bytes = r.integer("bytes", std::nullopt, 0);
  s.pairs = r.integer("pairs", std::nullopt, 0);
  s.fingerprint = r.string("fingerprint");
  s.seed = r.unsigned_integer("seed");
  // Indices are checked against the corpus by data::apply_split.
  s.indices.valid = r.integers("valid", 0, s.pairs - 1);
  s.indices.test = r.integers("test", 0, s.pairs - 1);
  r.reject_unknown_fields();
  return s;
}

std::pair<data::Vocab, data::Vocab> load_checkpoint_vocabs(const std::string& dir) {
  return {data::Vocab::load(dir + "/source_vocab.txt"),
          data::Vocab::load(dir + "/target_vocab.txt")};
}

// The state dict loaders know the names, not the file: their errors get the path in front.
void load_model_weights(const std::string& dir, Seq2Seq& model) {
  std::string path = dir + "/model.safetensors";
  nn::StateDict state = safetensors::load(path).tensors;
  try {
    model.load_state_dict(state);
  } catch (const Error& e) {
    KILN_FAIL(path, ": does not fit the model of config.json: ", e.what());
  }
}

void load_ema_weights(const std::string& dir, Seq2Seq& model, nn::ExponentialMovingAverage& ema,
                      int64_t updates) {
  std::string raw = dir + "/raw_model.safetensors", averaged = dir + "/model.safetensors";
  std::error_code ec;
  KILN_CHECK(fs::exists(raw, ec), "resume: ", dir, " has no raw_model.safetensors: it was not ",
             "trained with --ema, so it has no weight average to continue");
  nn::StateDict own = safetensors::load(raw).tensors;
  nn::StateDict average = safetensors::load(averaged).tensors;
  try {
    model.load_state_dict(own);
  } catch (const Error& e) {
    KILN_FAIL(raw, ": does not fit the model of config.json: ", e.what());
  }
  try {
    ema.load_state_dict(average, updates);
  } catch (const Error& e) {
    KILN_FAIL(averaged, ": does not fit the model of config.json: ", e.what());
  }
}

void load_optimizer_state(const std::string& dir, nn::Optimizer& optimizer) {
  std::string path = dir + "/optimizer.safetensors";
  nn::StateDict state = safetensors::load(path).tensors;
  try {
    optimizer.load_state_dict(state);
  } catch (const Error& e) {
    KILN_FAIL(path, ": does not fit the optimizer of config.json: ", e.what());
  }
}

namespace {

// Where two files' lines first differ, for the error that names it.
std::string first_difference(const std::string& text, const std::string& reference) {
  std::vector<std::string_view> a = data::split_lines(text), b = data::split_lines(reference);
  auto line = [](const std::vector<std::string_view>& lines, size_t i) {
    return i < lines.size() ? "'" + std::string(lines[i]) + "'" : std::string("the end");
  };
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size() || i >= b.size() || a[i] != b[i])
      return "line " + std::to_string(i + 1) + " is " + line(a, i) + ", not " + line(b, i);
  }
  return "the lines are the same but the bytes differ (line endings?)";
}

// What must be equal for weights to be averaged: the model section of config.json, the tokenizer,
// the vocabulary files and the SentencePiece models. `k` is checked against checkpoint 0.
void check_same_model(const std::vector<std::string>& folders,
                      const std::vector<TrainOptions>& options, size_t k) {
  const std::string &first = folders[0], &other = folders[k];
  nlohmann::json reference = nlohmann::json::parse(options[0].model.to_json());
  nlohmann::json model = nlohmann::json::parse(options[k].model.to_json());
  for (const auto& field : reference.items()) {
    KILN_CHECK(model[field.key()] == field.value(), "average: ", other,
               "/config.json: model field '", field.key(), "' is ", model[field.key()].dump(),
               ", but ", field.value().dump(), " in ", first,
               "/config.json; only checkpoints of one model can be averaged");
  }
  KILN_CHECK(options[k].tokenizer == options[0].tokenizer, "average: ", other,
             "/config.json: tokenizer '", options[k].tokenizer, "', but '", options[0].tokenizer,
             "' in ", first, "/config.json; only checkpoints of one model can be averaged");
  for (const char* vocab : {"/source_vocab.txt", "/target_vocab.txt"}) {
    std::string text = data::read_text_file("average", other + vocab);
    std::string reference_text = data::read_text_file("average", first + vocab);
    KILN_CHECK(text == reference_text, "average: ", other, vocab, " differs from ", first, vocab,
               " (", first_difference(text, reference_text),
               "); only checkpoints with the same vocabularies can be averaged");
  }
  if (options[0].tokenizer != "sentencepiece") return;
  for (const char* spm : {"/source.spm.model", "/target.spm.model"}) {
    KILN_CHECK(data::read_text_file("average", other + spm) ==
                   data::read_text_file("average", first + spm),
               "average: ", other, spm, " differs from ", first, spm,
               "; only checkpoints with the same subword models can be averaged");
  }
}

}  // namespace

int64_t average_checkpoints(const std::vector<std::string>& dirs, const std::string& out) {
  const char* op = "average";
  KILN_CHECK(dirs.size() >= 2, "average: give at least two checkpoints, got ", dirs.size());
  std::error_code ec;
  for (const std::string& dir : dirs) {
    KILN_CHECK(!fs::equivalent(dir, out, ec), "average: --out ", out, " is one of the checkpoints ",
               "to average; give a new folder");
  }
  // The whole folder is replaced: only one that an earlier average wrote.
  KILN_CHECK(!fs::exists(out, ec) || fs::exists(out + "/averaged.json", ec), "average: --out ", out,
             " exists and is not a checkpoint written by kiln average; give a new folder");
  std::vector<std::string> folders;
  std::vector<TrainOptions> options;
  for (const std::string& dir : dirs) {
    folders.push_back(checkpoint_folder(dir));
    options.push_back(load_checkpoint_options(folders.back(), op));
  }
  for (size_t k = 1; k < dirs.size(); ++k) check_same_model(folders, options, k);
  std::vector<nn::StateDict> weights;
  for (const std::string& folder : folders) {
    std::unique_ptr<Seq2Seq> model;
    {
      nn::SkipInitScope overwritten_next;  // load_model_weights sets every parameter
      model = std::make_unique<Seq2Seq>(options[0].model);
    }
    load_model_weights(folder, *model);
    weights.push_back(model->state_dict());
  }
  nn::StateDict mean = nn::average_state_dicts(weights, folders);
  durable_write_folder(
      out,
      [&](const std::string& tmp) {
        safetensors::save(tmp + "/model.safetensors", mean, {{"format", "pt"}});
        durable_write(tmp + "/config.json", options[0].to_json(), op);
        for (const char* vocab : {"/source_vocab.txt", "/target_vocab.txt"})
          durable_write(tmp + vocab, data::read_text_file(op, folders[0] + vocab), op);
        if (options[0].tokenizer == "sentencepiece") copy_tokenizers(folders[0], tmp);
        const LexicalTable lexical = LexicalTable::load_if_present(folders[0]);
        if (!lexical.empty()) lexical.save(tmp);  // same vocabularies: the first's table fits
        durable_write(tmp + "/averaged.json", nlohmann::json{{"averaged_from", dirs}}.dump(2), op);
      },
      op);
  int64_t count = 0;
  for (const auto& [name, tensor] : mean) count += tensor.numel();
  return count;
}

}  // namespace kiln::seq2seq
