// Checkpoint folders: writing one atomically, and reading its parts back (see checkpoint.h).
// Every file goes through core/durable_file.h; this file adds only the folder swap.
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

void write_directory_atomically(const std::string& dir,
                                const std::function<void(const std::string&)>& fill) {
  const char* op = "write_directory_atomically";
  fs::path target(dir);
  fs::path tmp = target;
  tmp += ".tmp";
  fs::path old = target;
  old += ".old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  KILN_CHECK(!ec, tmp.string(), ": cannot create: ", ec.message());
  try {
    fill(tmp.string());
    // Not every file in it was written durably (vocabularies, copied tokenizer models).
    for (const auto& entry : fs::directory_iterator(tmp)) durable_sync(entry.path().string(), op);
    durable_sync(tmp.string(), op);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // Swap: the old checkpoint stays complete under <dir>.old until the new one is in place.
  fs::remove_all(old, ec);
  if (fs::exists(target)) {
    fs::rename(target, old, ec);
    KILN_CHECK(!ec, dir, ": cannot move the previous checkpoint aside: ", ec.message());
  }
  fs::rename(tmp, target, ec);
  KILN_CHECK(!ec, dir, ": cannot move the new checkpoint in place: ", ec.message());
  fs::remove_all(old, ec);
  fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  durable_sync(parent.string(), op);
}

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

// The subword models travel with the checkpoint, so Translator::load needs nothing else.
void copy_tokenizers(const std::string& from, const std::string& to) {
  for (const char* model : {"/source.spm.model", "/target.spm.model"}) {
    try {
      fs::copy_file(from + model, to + model);
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
  write_directory_atomically(dir, [&](const std::string& tmp) {
    safetensors::save(tmp + "/model.safetensors", model.state_dict(), {{"format", "pt"}});
    safetensors::save(tmp + "/optimizer.safetensors", optimizer.state_dict());
    durable_write(tmp + "/config.json", options.to_json(), op);
    prepared.source_vocab.save(tmp + "/source_vocab.txt");
    prepared.target_vocab.save(tmp + "/target_vocab.txt");
    if (!prepared.tokenizer_dir.empty()) copy_tokenizers(prepared.tokenizer_dir, tmp);
    durable_write(tmp + "/state.json", state_json(state), op);
  });
}

TrainOptions load_checkpoint_options(const std::string& dir, const char* op) {
  std::string path = dir + "/config.json";
  return TrainOptions::from_json(data::read_text_file(op, path), path);
}

TrainState load_train_state(const std::string& dir) {
  std::string path = dir + "/state.json";
  return parse_train_state(data::read_text_file("resume", path), path);
}

TrainState parse_train_state(const std::string& text, const std::string& path) {
  nlohmann::json j = parse_json_object(text, path);
  TrainState s;
  try {
    s.epoch = json_int64(j, "epoch", path);
    // Informative only: resume does not need them, and a diverged loss is written as null.
    auto number = [&](const char* key) { return j.contains(key) && j[key].is_number(); };
    if (number("steps")) s.steps = json_int64(j, "steps", path);
    if (number("train_loss")) s.train_loss = j["train_loss"].get<double>();
    if (number("valid_loss")) s.valid_loss = j["valid_loss"].get<double>();
    s.best_valid_loss = j.value("best_valid_loss", s.best_valid_loss);
    s.rng_seed = json_uint64(j, "rng_seed", path);
    s.rng_offset = json_uint64(j, "rng_offset", path);
  } catch (const nlohmann::json::exception& e) {
    KILN_FAIL(path, ": ", e.what());
  }
  return s;
}

std::pair<data::Vocab, data::Vocab> load_checkpoint_vocabs(const std::string& dir) {
  return {data::Vocab::load(dir + "/source_vocab.txt"),
          data::Vocab::load(dir + "/target_vocab.txt")};
}

void load_model_weights(const std::string& dir, Seq2Seq& model) {
  model.load_state_dict(safetensors::load(dir + "/model.safetensors").tensors);
}

void load_optimizer_state(const std::string& dir, nn::Optimizer& optimizer) {
  optimizer.load_state_dict(safetensors::load(dir + "/optimizer.safetensors").tensors);
}

}  // namespace kiln::seq2seq
