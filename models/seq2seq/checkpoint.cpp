// Checkpoint folders: writing one atomically, and reading its parts back (see checkpoint.h).
// Every file and the folder swap go through core/durable_file.h.
#include "models/seq2seq/checkpoint.h"

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
                      {"best_valid_loss", s.best_valid_loss}};
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

}  // namespace

void save_checkpoint(const std::string& dir, const TrainOptions& options, const Seq2Seq& model,
                     const nn::Optimizer& optimizer, const Prepared& prepared,
                     const TrainState& state) {
  const char* op = "save_checkpoint";
  durable_write_folder(
      dir,
      [&](const std::string& tmp) {
        safetensors::save(tmp + "/model.safetensors", model.state_dict(), {{"format", "pt"}});
        safetensors::save(tmp + "/optimizer.safetensors", optimizer.state_dict());
        durable_write(tmp + "/config.json", options.to_json(), op);
        prepared.source_vocab.save(tmp + "/source_vocab.txt");
        prepared.target_vocab.save(tmp + "/target_vocab.txt");
        if (!prepared.tokenizer_dir.empty()) copy_tokenizers(prepared.tokenizer_dir, tmp);
        if (prepared.split_record) {
          durable_write(tmp + "/split.json", split_json(*prepared.split_record), op);
        }
        durable_write(tmp + "/state.json", state_json(state), op);
      },
      op);
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
  return parse_train_state(data::read_text_file("resume", path), path);
}

TrainState parse_train_state(const std::string& text, const std::string& path) {
  JsonReader r(text, path);
  TrainState s;
  s.epoch = r.integer("epoch", std::nullopt, 0);
  // Informative only: resume does not need them, and a diverged loss is written as null.
  s.steps = r.integer("steps", 0, 0);
  s.train_loss = r.number("train_loss", 0.0);
  s.valid_loss = r.number("valid_loss", 0.0);
  s.best_valid_loss = r.number("best_valid_loss", s.best_valid_loss);
  s.rng_seed = r.unsigned_integer("rng_seed");
  s.rng_offset = r.unsigned_integer("rng_offset");
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

void load_optimizer_state(const std::string& dir, nn::Optimizer& optimizer) {
  std::string path = dir + "/optimizer.safetensors";
  nn::StateDict state = safetensors::load(path).tensors;
  try {
    optimizer.load_state_dict(state);
  } catch (const Error& e) {
    KILN_FAIL(path, ": does not fit the optimizer of config.json: ", e.what());
  }
}

}  // namespace kiln::seq2seq
