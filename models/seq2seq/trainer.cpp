// The training loop of kiln's translator (see trainer.h).
#include "models/seq2seq/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "core/random.h"
#include "core/safetensors.h"
#include "models/data/text_file.h"
#include "models/data/tokenizer.h"
#include "models/metrics.h"
#include "models/seq2seq/checkpoint.h"

namespace kiln::seq2seq {

namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainOptions& o, std::vector<Tensor> params) {
  if (o.optimizer == "sgd") return std::make_unique<nn::SGD>(params, nn::SgdOptions{o.lr, o.momentum, 0, o.weight_decay});
  if (o.optimizer == "rmsprop") {
    return std::make_unique<nn::RMSprop>(params, nn::RmspropOptions{o.lr, 0.99, 1e-8, o.weight_decay, 0});
  }
  nn::AdamOptions adam{o.lr, 0.9, 0.999, 1e-8, o.weight_decay};
  if (o.optimizer == "adamw") return std::make_unique<nn::AdamW>(params, adam);
  return std::make_unique<nn::Adam>(params, adam);
}

std::unique_ptr<nn::LrSchedule> make_schedule(const TrainOptions& o, int64_t total_steps) {
  if (o.schedule == "step") return std::make_unique<nn::StepDecayLr>(o.lr, o.step_size, o.gamma);
  if (o.schedule == "inverse-sqrt") return std::make_unique<nn::WarmupInverseSqrtLr>(o.lr, std::max<int64_t>(o.warmup, 1));
  if (o.schedule == "cosine") {
    return std::make_unique<nn::WarmupCosineLr>(o.lr, o.warmup, std::max<int64_t>(total_steps, o.warmup + 1), 0.0);
  }
  return std::make_unique<nn::ConstantLr>(o.lr);
}

std::string format_duration(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%ldh%02ldm", static_cast<long>(s / 3600), static_cast<long>(s % 3600 / 60));
  else std::snprintf(text, sizeof text, "%ldm%02lds", static_cast<long>(s / 60), static_cast<long>(s % 60));
  return text;
}

std::string metrics_json(const EpochMetrics& m) {
  nlohmann::json j = {{"epoch", m.epoch},           {"steps", m.steps},         {"train_loss", m.train_loss},
                      {"valid_loss", m.valid_loss}, {"valid_bleu", m.valid_bleu}, {"valid_exact", m.valid_exact},
                      {"seconds", m.seconds},       {"tokens_per_second", m.tokens_per_second}, {"lr", m.lr},
                      {"grad_norm", m.grad_norm}};
  return j.dump();
}

// A small SVG of training and validation loss per epoch.
void write_loss_svg(const std::string& path, const std::vector<EpochMetrics>& history) {
  if (history.empty()) return;
  const double width = 640, height = 360, left = 60, right = 20, top = 20, bottom = 50;
  double max_loss = 0;
  for (const EpochMetrics& m : history) max_loss = std::max({max_loss, m.train_loss, m.valid_loss});
  if (max_loss <= 0) max_loss = 1;
  double last_epoch = static_cast<double>(history.back().epoch), first_epoch = static_cast<double>(history.front().epoch);
  auto x = [&](double epoch) {
    return left + (last_epoch > first_epoch ? (epoch - first_epoch) / (last_epoch - first_epoch) : 0.5) * (width - left - right);
  };
  auto y = [&](double loss) { return top + (1 - loss / max_loss) * (height - top - bottom); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << height - bottom << "\" x2=\"" << width - right << "\" y2=\""
      << height - bottom << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left
      << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n";
  svg << "<text x=\"" << width / 2 << "\" y=\"" << height - 15 << "\" text-anchor=\"middle\">epoch</text>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << top + 4 << "\" text-anchor=\"end\">" << max_loss << "</text>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << height - bottom << "\" text-anchor=\"end\">0</text>\n"
      << "<text x=\"" << left << "\" y=\"" << height - bottom + 16 << "\">" << first_epoch << "</text>\n"
      << "<text x=\"" << width - right << "\" y=\"" << height - bottom + 16 << "\" text-anchor=\"end\">" << last_epoch
      << "</text>\n";
  auto line = [&](auto value, const char* color, const char* label, double label_y) {
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const EpochMetrics& m : history) svg << x(static_cast<double>(m.epoch)) << "," << y(value(m)) << " ";
    svg << "\"/>\n<text x=\"" << width - right - 120 << "\" y=\"" << label_y << "\" fill=\"" << color << "\">" << label
        << "</text>\n";
  };
  line([](const EpochMetrics& m) { return m.train_loss; }, "#1f77b4", "train loss / token", top + 14);
  line([](const EpochMetrics& m) { return m.valid_loss; }, "#d62728", "valid loss / token", top + 30);
  svg << "</svg>\n";
  write_text_file(path, svg.str());
}

struct Prepared {
  data::Split split;
  std::shared_ptr<data::Tokenizer> source_tokenizer, target_tokenizer;
  std::string tokenizer_dir;  // where the SentencePiece models are (empty for words)
  data::Vocab source_vocab, target_vocab;
  std::vector<data::EncodedPair> train;
};

data::TokenizedPairs tokenize_with(const Prepared& p, const std::vector<data::SentencePair>& pairs) {
  data::TokenizedPairs out;
  for (const data::SentencePair& pair : pairs) {
    out.source.push_back(p.source_tokenizer->tokenize(pair.source));
    out.target.push_back(p.target_tokenizer->tokenize(pair.target));
  }
  return out;
}

Prepared prepare(TrainOptions& o, const std::string& out_dir, const std::string& resume_dir,
                 const std::function<void(const std::string&)>& log) {
  Prepared p;
  p.split = load_data(o, log);
  if (o.tokenizer == "sentencepiece") {
    p.tokenizer_dir = resume_dir;
    if (resume_dir.empty()) {  // subwords learned from the training side of each language
      p.tokenizer_dir = out_dir + "/tokenizers";
      std::filesystem::create_directories(p.tokenizer_dir);
      std::vector<std::string> sources, targets;
      for (const data::SentencePair& pair : p.split.train) {
        sources.push_back(pair.source);
        targets.push_back(pair.target);
      }
      data::SentencePieceTokenizer::train(sources, o.subword_vocab, p.tokenizer_dir + "/source.spm.model");
      data::SentencePieceTokenizer::train(targets, o.subword_vocab, p.tokenizer_dir + "/target.spm.model");
    }
  }
  std::tie(p.source_tokenizer, p.target_tokenizer) = load_tokenizers(o, p.tokenizer_dir);
  data::TokenizedPairs train_tokens = tokenize_with(p, p.split.train);
  if (!resume_dir.empty()) {
    p.source_vocab = data::Vocab::load(resume_dir + "/source_vocab.txt");
    p.target_vocab = data::Vocab::load(resume_dir + "/target_vocab.txt");
  } else {
    data::TokenizedPairs vocab_tokens = train_tokens;
    if (o.vocab_from_valid) {
      data::TokenizedPairs valid_tokens = tokenize_with(p, p.split.valid);
      vocab_tokens.source.insert(vocab_tokens.source.end(), valid_tokens.source.begin(), valid_tokens.source.end());
      vocab_tokens.target.insert(vocab_tokens.target.end(), valid_tokens.target.begin(), valid_tokens.target.end());
    }
    p.source_vocab = data::Vocab::build(vocab_tokens.source, o.min_freq, o.max_vocab);
    p.target_vocab = data::Vocab::build(vocab_tokens.target, o.min_freq, o.max_vocab);
  }
  o.model.source_vocab = p.source_vocab.size();
  o.model.target_vocab = p.target_vocab.size();
  p.train = data::encode_pairs(train_tokens.source, train_tokens.target, p.source_vocab, p.target_vocab);
  return p;
}

void save_checkpoint(const std::string& dir, const TrainOptions& o, const Seq2Seq& model, const nn::Optimizer& opt,
                     const Prepared& p, const nlohmann::json& state) {
  write_directory_atomically(dir, [&](const std::string& tmp) {
    safetensors::save(tmp + "/model.safetensors", model.state_dict(), {{"format", "pt"}});
    safetensors::save(tmp + "/optimizer.safetensors", opt.state_dict());
    write_text_file(tmp + "/config.json", o.to_json());
    p.source_vocab.save(tmp + "/source_vocab.txt");
    p.target_vocab.save(tmp + "/target_vocab.txt");
    if (!p.tokenizer_dir.empty()) {
      for (const char* model : {"/source.spm.model", "/target.spm.model"}) {
        std::filesystem::copy_file(p.tokenizer_dir + model, tmp + model);
      }
    }
    write_text_file(tmp + "/state.json", state.dump(2));
  });
}

}  // namespace

std::vector<EpochMetrics> train(const TrainOptions& options_in, const std::string& out_dir,
                                const std::string& resume_dir,
                                const std::function<void(const std::string&)>& log_in) {
  auto log = [&](const std::string& line) {
    if (log_in) log_in(line);
  };
  TrainOptions o = options_in;
  nlohmann::json resume_state;
  if (!resume_dir.empty()) {
    std::string epochs_wanted_note;
    int64_t epochs = o.epochs;
    o = TrainOptions::from_json(data::read_text_file("resume", resume_dir + "/config.json"), resume_dir + "/config.json");
    o.epochs = std::max(epochs, o.epochs);
    resume_state = nlohmann::json::parse(data::read_text_file("resume", resume_dir + "/state.json"));
  }
  o.validate();
  Device device = Device::parse(o.device);
  manual_seed(o.seed);
  Prepared p = prepare(o, out_dir, resume_dir, log);
  log("data: " + std::to_string(p.split.train.size()) + " train / " + std::to_string(p.split.valid.size()) +
      " valid / " + std::to_string(p.split.test.size()) + " test pairs; vocab " +
      std::to_string(p.source_vocab.size()) + " source, " + std::to_string(p.target_vocab.size()) + " target tokens");

  manual_seed(o.seed);  // the same initial weights whatever the data loading drew
  Seq2Seq model(o.model);
  model.to(device);
  auto opt = make_optimizer(o, model.parameters());
  int64_t first_epoch = 1;
  std::vector<EpochMetrics> history;
  double best_valid = std::numeric_limits<double>::infinity();
  if (!resume_dir.empty()) {
    model.load_state_dict(safetensors::load(resume_dir + "/model.safetensors").tensors);
    opt->load_state_dict(safetensors::load(resume_dir + "/optimizer.safetensors").tensors);
    first_epoch = resume_state.at("epoch").get<int64_t>() + 1;
    best_valid = resume_state.value("best_valid_loss", best_valid);
    default_generator().manual_seed(resume_state.at("rng_seed").get<uint64_t>());
    default_generator().set_offset(resume_state.at("rng_offset").get<uint64_t>());
    log("resuming from " + resume_dir + " after epoch " + std::to_string(first_epoch - 1));
  }
  log("model: " + std::string(cell_name(o.model.cell)) + " " + std::to_string(o.model.num_layers) + "x" +
      std::to_string(o.model.hidden_size) + ", embed " + std::to_string(o.model.embed_size) + ", attention " +
      attention_name(o.model.attention) + ", " + std::to_string(model.num_parameters()) + " parameters, on " +
      device.str());
  std::filesystem::create_directories(out_dir);

  data::BatchOptions batch_options;
  batch_options.batch_size = o.batch_size;
  batch_options.num_steps = o.num_steps;
  int64_t batches_per_epoch = (static_cast<int64_t>(p.train.size()) + o.batch_size - 1) / o.batch_size;
  auto schedule = make_schedule(o, batches_per_epoch * o.epochs);
  bool tty = isatty(fileno(stdout)) && !o.quiet;
  auto run_start = Clock::now();
  for (int64_t epoch = first_epoch; epoch <= o.epochs; ++epoch) {
    model.train();
    batch_options.seed = o.seed * 1000003 + static_cast<uint64_t>(epoch);  // a fresh, reproducible order
    std::vector<data::Batch> batches = data::make_batches(p.train, batch_options, device);
    EpochMetrics m;
    m.epoch = epoch;
    auto epoch_start = Clock::now();
    double loss_sum = 0;
    int64_t tokens = 0;
    for (size_t i = 0; i < batches.size(); ++i) {
      const data::Batch& b = batches[i];
      opt->set_lr(schedule->lr_at(opt->step_count() + 1));
      opt->zero_grad();
      Tensor logits = model.decode_teacher(model.encode(b.source, b.source_lengths), b.target_in, o.teacher_forcing);
      Tensor loss = model.loss(logits, b.target_out, b.target_mask, o.label_smoothing);
      backward(loss);
      Tensor norm = o.clip > 0 ? nn::clip_grad_norm(model.parameters(), o.clip) : Tensor();
      double norm_value = norm.defined() ? norm.item() : 0.0;
      if (norm.defined() && !std::isfinite(norm_value)) {
        log("epoch " + std::to_string(epoch) + " step " + std::to_string(i + 1) +
            ": non-finite gradient norm, step skipped");
        continue;
      }
      opt->step();
      double l = loss.item();
      loss_sum += l * b.num_target_tokens;
      tokens += b.num_target_tokens;
      m.grad_norm = norm_value;
      double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
      bool show = tty ? true : (i + 1 == batches.size());
      if (show && !o.quiet) {
        double done = (epoch - first_epoch) + double(i + 1) / batches.size();
        double total_elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
        double eta = total_elapsed / done * (o.epochs - first_epoch + 1 - done);
        char line[256];
        std::snprintf(line, sizeof line, "epoch %ld/%ld step %zu/%zu loss %.4f tok/s %.0f gnorm %.3f lr %.2e eta %s",
                      static_cast<long>(epoch), static_cast<long>(o.epochs), i + 1, batches.size(), loss_sum / tokens,
                      tokens / std::max(elapsed, 1e-9), norm_value, opt->lr(), format_duration(eta).c_str());
        if (tty) std::printf("\r%s\033[K", line), std::fflush(stdout);
      }
    }
    if (tty) std::printf("\n");
    m.steps = opt->step_count();
    m.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    m.train_loss = tokens ? loss_sum / tokens : 0;
    m.tokens_per_second = tokens / std::max(m.seconds, 1e-9);
    m.lr = opt->lr();
    // Validation: loss by teacher forcing, BLEU and exact match of greedy translations.
    model.eval();
    if (!p.split.valid.empty()) {
      Translator t{std::shared_ptr<Seq2Seq>(&model, [](Seq2Seq*) {}), p.source_tokenizer, p.target_tokenizer,
                   p.source_vocab, p.target_vocab, o, device};
      m.valid_loss = t.mean_nll(p.split.valid);
      int64_t n = std::min<int64_t>(o.bleu_sentences, static_cast<int64_t>(p.split.valid.size()));
      std::vector<std::string> sources, references, hypotheses;
      for (int64_t k = 0; k < n; ++k) {
        sources.push_back(p.split.valid[k].source);
        references.push_back(data::detokenize(data::tokenize_d2l(p.split.valid[k].target)));
      }
      for (const auto& h : t.translate(sources)) hypotheses.push_back(t.to_text(h[0]));
      m.valid_bleu = metrics::corpus_bleu(hypotheses, references);
      m.valid_exact = metrics::exact_match(hypotheses, references);
    }
    history.push_back(m);
    char line[256];
    if (p.split.valid.empty()) {
      std::snprintf(line, sizeof line,
                    "epoch %ld: train loss %.4f, no validation split, %.0f tok/s, %.1f s",
                    static_cast<long>(epoch), m.train_loss, m.tokens_per_second, m.seconds);
    } else {
      std::snprintf(
          line, sizeof line,
          "epoch %ld: train loss %.4f, valid loss %.4f, valid BLEU %.2f, exact %.1f%%, %.1f s",
          static_cast<long>(epoch), m.train_loss, m.valid_loss, m.valid_bleu, 100 * m.valid_exact,
          m.seconds);
    }
    log(line);
    std::ofstream(out_dir + "/metrics.jsonl", std::ios::app) << metrics_json(m) << "\n";
    nlohmann::json state = {{"epoch", epoch}, {"steps", opt->step_count()}, {"train_loss", m.train_loss},
                            {"valid_loss", m.valid_loss}, {"rng_seed", default_generator().seed()},
                            {"rng_offset", default_generator().offset()}};
    bool best = p.split.valid.empty() || m.valid_loss < best_valid;
    if (best) best_valid = m.valid_loss;
    state["best_valid_loss"] = best_valid;
    save_checkpoint(out_dir + "/last", o, model, *opt, p, state);
    if (best) save_checkpoint(out_dir + "/best", o, model, *opt, p, state);
    write_loss_svg(out_dir + "/loss.svg", history);
  }
  return history;
}

}  // namespace kiln::seq2seq
