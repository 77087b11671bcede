// kiln: train, translate with and evaluate Seq2Seq translators.
//   kiln train --task numbers-en --attention bahdanau --out runs/numbers
//   kiln train --data fra.txt --preset d2l --out runs/d2l
//   echo "go ." | kiln translate --checkpoint runs/d2l/best --beam 4
//   kiln eval --checkpoint runs/numbers/best --task numbers-en
//   kiln average --checkpoints runs/a/last runs/b/last --out runs/averaged
//   kiln shortlist --checkpoint runs/d2l/best   (the lexical table of --shortlist K)
//   kiln serve --checkpoint runs/d2l/best --port 8080
// Every flag has --help; a bad flag or value is named in the error and the exit code is non-zero.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>

#include "core/allocator.h"
#include "core/durable_file.h"
#include "dist/communicator.h"
#include "kernels/threads.h"
#include "models/data/corpus.h"
#include "models/data/line_stream.h"
#include "models/data/tasks.h"
#include "models/data/text_file.h"
#include "models/data/tokenizer.h"
#include "models/metrics.h"
#include "models/seq2seq/attention_svg.h"
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/prepare.h"
#include "models/seq2seq/report.h"
#include "models/seq2seq/server.h"
#include "models/seq2seq/trainer.h"
#include "models/seq2seq/translator.h"

namespace {

using namespace kiln;
using seq2seq::TrainOptions;

// The d2l.ai presets: the book's hyperparameters on its fra-eng file.
void apply_preset(const std::string& name, TrainOptions& o) {
  o.model.cell = nn::CellType::gru;
  o.model.num_layers = 2;
  o.optimizer = "adam";
  o.lr = 0.005;
  o.clip = 1.0;
  o.min_freq = 2;
  o.vocab_from_valid = true;
  o.lowercase = true;  // d2l lowercases (and its sample sentences below are lowercase)
  o.sample_sentences = {"go .", "i lost .", "he's calm .", "i'm home ."};
  // The book's references for d2l's BLEU of the four sample sentences.
  o.sample_references = {"va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."};
  if (name == "d2l") {  // d2l.ai 1.0, section 10.7
    o.model.embed_size = 256;
    o.model.hidden_size = 256;
    o.model.dropout = 0.2;
    o.batch_size = 128;
    o.num_steps = 9;
    o.train_pairs = 512;
    o.valid_pairs = 128;
    o.epochs = 30;
  } else if (name == "d2l-classic") {  // the earlier editions: 600 pairs, 300 epochs
    o.model.embed_size = 32;
    o.model.hidden_size = 32;
    o.model.dropout = 0.1;
    o.batch_size = 64;
    o.num_steps = 10;
    o.train_pairs = 600;
    o.valid_pairs = 0;
    o.epochs = 300;
  } else {
    throw CLI::ValidationError("--preset", "'" + name + "' is not one of: d2l, d2l-classic");
  }
}

void print_samples(const seq2seq::Translator& t, const std::vector<std::string>& sentences,
                   const std::vector<std::string>& references,
                   const std::vector<data::SentencePair>& reference_pairs) {
  auto hyps = t.translate(sentences);
  for (size_t i = 0; i < sentences.size(); ++i) {
    std::string out = t.to_text(hyps[i][0]);
    std::string line = sentences[i] + " => " + out;
    // d2l's BLEU (k = 2) against the given reference (the presets'), or sacreBLEU's sentence BLEU
    // against the sentence's own raw target in the data.
    if (i < references.size()) {
      char score[64];
      std::snprintf(
          score, sizeof score, ", bleu %.3f",
          metrics::bleu_d2l(data::tokenize_d2l(out), data::tokenize_d2l(references[i]), 2));
      std::printf("%s%s\n", line.c_str(), score);
      continue;
    }
    for (const data::SentencePair& p : reference_pairs) {
      if (data::detokenize(data::tokenize_d2l(p.source)) ==
          data::detokenize(data::tokenize_d2l(sentences[i]))) {
        char score[64];
        std::snprintf(score, sizeof score, ", sentence BLEU %.1f (reference: %s)",
                      metrics::sentence_bleu(out, p.target), p.target.c_str());
        line += score;
        break;
      }
    }
    std::printf("%s\n", line.c_str());
  }
}

int run_train(const TrainOptions& options, const std::string& out, const std::string& resume,
              bool overwrite, const std::vector<std::string>& flags_given = {}) {
  auto log = [](const std::string& line) {
    std::printf("%s\n", line.c_str()), std::fflush(stdout);
  };
  std::vector<seq2seq::EpochMetrics> history =
      seq2seq::train(options, out, resume, log, overwrite, flags_given);
  if (history.empty()) return 0;            // nothing to train, and the log said why
  if (dist::world().rank() != 0) return 0;  // under mpirun, rank 0 reports
  // The caching allocator's figures for the run (KILN_CACHE_LIMIT trades `held` against speed).
  log(memory_summary(Device::parse(options.device)));
  seq2seq::Translator t = seq2seq::Translator::load(out + "/last", options.device);
  data::Split split = seq2seq::load_data(t.options, nullptr, "train", out + "/last");
  if (!t.options.sample_sentences.empty()) {
    std::vector<data::SentencePair> all = split.train;
    all.insert(all.end(), split.valid.begin(), split.valid.end());
    print_samples(t, t.options.sample_sentences, t.options.sample_references, all);
  }
  std::printf("checkpoints: %s/last, %s/best; metrics: %s/metrics.jsonl; loss curve: %s/loss.svg\n",
              out.c_str(), out.c_str(), out.c_str(), out.c_str());
  return 0;
}

// The decoding flags kiln translate and kiln eval share (add_decoding_flags).
struct DecodingFlags {
  seq2seq::TranslateOptions search;
  int64_t max_source_length = 0;  // 0: the checkpoint's
};

// kiln translate's flags beyond the checkpoint folders and the device.
struct TranslateFlags {
  DecodingFlags decoding;
  bool scores = false, replace_unk = false, strict = false;
  std::string attention_svg;  // a folder: line-<N>.svg per input line
};

// stdin is read as it arrives (data::LineStream) and cleaned as a corpus side is: one output
// line (or n-best block) per input line, "" for a blank line or a line with invalid UTF-8, which
// is reported as "stdin:LINE: ..." on stderr (fatal with --strict). Lines are taken until 8
// batches are buffered, the input pauses for 50 ms, or it ends; the Translator sorts them by
// length into batches, and the answers are written in input order and flushed at once, so a
// line typed or piped alone is answered before the input ends.
int run_translate(const std::vector<std::string>& checkpoints, const std::string& device,
                  const TranslateFlags& flags) {
  seq2seq::Translator t = seq2seq::Translator::load(checkpoints, device);
  if (flags.decoding.max_source_length > 0) {
    t.options.max_source_length = flags.decoding.max_source_length;
  }
  const bool svg = !flags.attention_svg.empty();
  const auto needs_attention = [&](bool asked, const char* flag) {
    KILN_CHECK(!asked || t.has_attention(), flag, ": the model in ", checkpoints[0],
               " has no attention (", seq2seq::attention_name(t.options.model.attention), ")");
  };
  needs_attention(flags.replace_unk, "--replace-unk");
  needs_attention(svg, "--attention-svg");
  if (svg) {
    std::error_code error;
    std::filesystem::create_directories(flags.attention_svg, error);
    KILN_CHECK(!error, "--attention-svg: cannot create the folder '", flags.attention_svg,
               "': ", error.message());
  }
  seq2seq::TranslateOptions search = flags.decoding.search;
  search.keep_attention = flags.replace_unk || svg;
  t.check(search);
  data::ReadOptions read;
  read.skip_bad_lines = !flags.strict;
  data::LineStream input(0, "stdin", read);
  int64_t line = 0, bad = 0, shown = 0, long_sources = 0;
  for (;;) {
    const data::InputLines chunk =
        input.next(8 * static_cast<size_t>(search.batch_size), /*pause_ms=*/50);
    if (chunk.sentences.empty()) break;
    for (const std::string& problem : chunk.problems) {
      if (shown++ >= static_cast<int64_t>(data::Corpus::max_problems_kept)) break;
      std::fprintf(stderr, "kiln: warning: %s (an empty line is written)\n", problem.c_str());
    }
    bad += chunk.skipped;
    long_sources += t.count_long_sources(chunk.sentences);
    const auto results = t.translate(chunk.sentences, search);
    for (size_t i = 0; i < chunk.sentences.size(); ++i) {
      ++line;
      const std::string& source = chunk.sentences[i];
      for (size_t k = 0; k < results[i].size(); ++k) {
        const seq2seq::Hypothesis& h = results[i][k];
        std::string text = flags.replace_unk ? t.to_text(h, source) : t.to_text(h);
        if (search.n_best > 1)
          std::printf("%zu\t%.4f\t%s\n", k + 1, h.score, text.c_str());
        else if (flags.scores)
          std::printf("%.4f\t%s\n", h.score, text.c_str());
        else
          std::printf("%s\n", text.c_str());
      }
      if (search.n_best > 1) std::printf("\n");
      const seq2seq::Hypothesis& best = results[i][0];
      if (svg && !best.attention.empty()) {
        seq2seq::write_attention_svg(flags.attention_svg + "/line-" + std::to_string(line) + ".svg",
                                     t.source_tokens(source),
                                     t.target_vocab.decode(best.tokens, false), best.attention);
      }
    }
    std::fflush(stdout);
  }
  if (bad > static_cast<int64_t>(data::Corpus::max_problems_kept))
    std::fprintf(stderr, "kiln: warning: %lld bad input line(s) in all\n",
                 static_cast<long long>(bad));
  if (long_sources > 0) {
    std::fprintf(stderr,
                 "kiln: warning: cut %lld source(s) longer than %lld tokens to that length "
                 "(--max-source-length)\n",
                 static_cast<long long>(long_sources),
                 static_cast<long long>(t.options.max_source_length));
  }
  return 0;
}

// On the pairs of the data flags, or with `split` ("valid", "test") on the run's own split: its
// corpus from config.json, a random split from split.json.
int run_eval(const std::string& checkpoint, const std::string& device, TrainOptions data_options,
             const std::string& split, const DecodingFlags& decoding, const std::string& output,
             int64_t max_target_length) {
  seq2seq::Translator t = seq2seq::Translator::load(checkpoint, device);
  if (decoding.max_source_length > 0) t.options.max_source_length = decoding.max_source_length;
  if (max_target_length > 0) t.options.max_target_length = max_target_length;
  t.check(decoding.search);
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  std::vector<data::SentencePair> pairs;
  if (split.empty()) {
    data_options.valid_pairs = 0;
    data_options.test_pairs = 0;
    data_options.train_pairs = -1;
    data_options.valid_fraction = 0;
    data_options.random_split = false;
    pairs = seq2seq::load_data(data_options, log, "eval").train;
  } else {
    data::Split parts =
        seq2seq::load_data(t.options, log, "eval", seq2seq::checkpoint_folder(checkpoint));
    pairs = split == "test" ? parts.test : parts.valid;
    KILN_CHECK(!pairs.empty(), "eval: the run of ", checkpoint, " has no ", split,
               " split (it was trained without --split-", split, ", --", split, "-pairs or --data-",
               split, ")");
  }
  if (int64_t n = t.count_long_pairs(pairs, data_options.strict_data)) {
    std::fprintf(
        stderr, "kiln: %s\n",
        seq2seq::long_pairs_warning(n, t.options.max_source_length, t.options.max_target_length)
            .c_str());
  }
  std::vector<std::string> sources, references, hypotheses;
  for (const auto& p : pairs) {
    sources.push_back(p.source);
    references.push_back(p.target);  // the raw text, as sacreBLEU scores against
  }
  for (const auto& h : t.translate(sources, decoding.search)) {
    hypotheses.push_back(t.to_text(h[0]));
  }
  if (!output.empty()) {
    std::string text;
    for (const std::string& h : hypotheses) text += h + "\n";
    durable_write(output, text, "eval --output");
  }
  double nll = t.mean_nll(pairs);
  std::printf("pairs %zu\n", pairs.size());
  std::printf("BLEU %.2f (sacreBLEU %s; detokenized output vs raw references)\n",
              metrics::corpus_bleu(hypotheses, references, metrics::BleuSmoothing::exp),
              metrics::kBleuSignature);
  std::printf("chrF2 %.2f (sacreBLEU %s)\n", metrics::corpus_chrf(hypotheses, references),
              metrics::kChrfSignature);
  std::printf("exact match %.2f%%\nloss per token %.6f\nperplexity %.4f\n",
              100 * metrics::exact_match(hypotheses, references), nll, std::exp(nll));
  return 0;
}

// `kiln shortlist`: the lexical table of --shortlist for a checkpoint saved without one, learned
// from the training pairs its config.json and split.json name (the same tokens and ids as its
// run's), written into the folder.
int run_shortlist(const std::string& checkpoint) {
  const std::string dir = seq2seq::checkpoint_folder(checkpoint);
  TrainOptions o = seq2seq::load_checkpoint_options(dir, "shortlist");
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  const seq2seq::Prepared p = seq2seq::prepare(o, dir, dir, log);
  p.lexical.save(dir);
  int64_t entries = 0;
  for (const auto& row : p.lexical.targets) entries += static_cast<int64_t>(row.size());
  std::printf("%s/%s: %lld source ids, %.1f target ids each on average, from %zu training pairs\n",
              checkpoint.c_str(), seq2seq::LexicalTable::file_name,
              static_cast<long long>(p.lexical.source_vocab),
              static_cast<double>(entries) / std::max<int64_t>(p.lexical.source_vocab, 1),
              p.train.size());
  return 0;
}

// `kiln demo`: the README's first command. Trains the default attention model on the generated
// French numbers task, then translates numbers it never saw in training.
int run_demo(TrainOptions o, const std::string& out) {
  if (o.task.empty() && o.data.empty() && o.data_source.empty()) o.task = "numbers-fr";
  std::printf(
      "kiln demo: %s, digits -> words; a GRU encoder-decoder with Bahdanau attention, on %s\n",
      o.task.c_str(), o.device.c_str());
  run_train(o, out, "", /*overwrite=*/true);  // the demo's folder is its own: rerunning replaces it
  seq2seq::Translator t = seq2seq::Translator::load(out + "/best", o.device);
  data::Split split = seq2seq::load_data(t.options, nullptr);
  // Held out: test pairs whose source never occurs in the training pairs.
  std::set<std::string> seen;
  for (const auto& p : split.train) seen.insert(p.source);
  std::vector<std::string> sources, references, hypotheses;
  for (const auto& p : split.test) {
    if (seen.count(p.source)) continue;
    sources.push_back(p.source);
    references.push_back(p.target);  // the raw text, as sacreBLEU scores against
  }
  KILN_CHECK(!sources.empty(),
             "demo: no held-out pairs (every test source also occurs in training)");
  for (const auto& h : t.translate(sources)) hypotheses.push_back(t.to_text(h[0]));
  std::printf("\nheld-out translations (sources never seen in training):\n");
  for (size_t i = 0; i < std::min<size_t>(8, sources.size()); ++i) {
    std::printf("  %-12s => %-40s %s\n", sources[i].c_str(), hypotheses[i].c_str(),
                hypotheses[i] == references[i] ? "ok" : ("expected: " + references[i]).c_str());
  }
  std::printf("held-out: %zu sentences, exact match %.2f%%, BLEU %.2f (sacreBLEU %s), chrF2 %.2f\n",
              sources.size(), 100 * metrics::exact_match(hypotheses, references),
              metrics::corpus_bleu(hypotheses, references, metrics::BleuSmoothing::exp),
              metrics::kBleuSignature, metrics::corpus_chrf(hypotheses, references));
  return 0;
}

// Readable range checks for flags ("--lr: must be > 0, got '-1'").
const CLI::Validator kPositive(
    [](std::string& value) {
      try {
        if (std::stod(value) > 0) return std::string();
      } catch (const std::exception&) {
      }
      return "must be > 0, got '" + value + "'";
    },
    "> 0");
const CLI::Validator kNonNegative(
    [](std::string& value) {
      try {
        if (std::stod(value) >= 0) return std::string();
      } catch (const std::exception&) {
      }
      return "must be >= 0, got '" + value + "'";
    },
    ">= 0");

// Rejects NaN and infinities, which CLI11's Range lets through (NaN compares false both ways).
const CLI::Validator kFinite(
    [](std::string& value) {
      try {
        if (std::isfinite(std::stod(value))) return std::string();
      } catch (const std::exception&) {
      }
      return "must be a finite number, got '" + value + "'";
    },
    "finite");

// --ema: a decay strictly between 0 and 1.
const CLI::Validator kDecay(
    [](std::string& value) {
      try {
        double decay = std::stod(value);
        if (decay > 0 && decay < 1) return std::string();
      } catch (const std::exception&) {
      }
      return "must be in (0, 1), e.g. 0.999, got '" + value + "'";
    },
    "(0, 1)");

// --threads: the CPU threads of every parallel region (kernels/threads.h); 0 or absent: automatic.
void add_threads_flag(CLI::App* app, int& threads, const std::string& name = "--threads") {
  app->add_option(name, threads,
                  "CPU threads for OpenMP and OpenBLAS (0: automatic, the cores other processes "
                  "leave idle; also KILN_NUM_THREADS)")
      ->check(CLI::Range(0, kiln::kMaxThreads));
}

void add_data_flags(CLI::App* app, TrainOptions& o) {
  app->add_option("--data", o.data,
                  "sentence pairs, TSV: source<TAB>target[<TAB>...] (Tatoeba/Anki, d2l's fra.txt)");
  app->add_option("--data-src", o.data_source,
                  "source side, one sentence per line (with --data-tgt)");
  app->add_option("--data-tgt", o.data_target, "target side, line-aligned with --data-src");
  app->add_option("--task", o.task, "a generated task instead of a file")
      ->check(CLI::IsMember(data::task_names()));
  app->add_option("--task-size", o.task_size, "pairs generated for --task")->check(kPositive);
  app->add_option("--max-pairs", o.max_pairs, "read at most this many pairs");
  app->add_flag("--strict", o.strict_data,
                "a malformed corpus line is fatal (default: reported and skipped)");
  app->add_option("--seed", o.seed, "seed of the generated task, shuffling, init and dropout");
  app->add_option("--device", o.device, "cpu, cuda or cuda:N");
}

// The help of --length-penalty is the caller's: translate prints the scores (--scores, --n-best),
// eval only ranks by them.
void add_decoding_flags(CLI::App* app, DecodingFlags& flags,
                        const std::string& length_penalty_help) {
  app->add_option("--beam", flags.search.beam_size, "beam width (1: greedy)")->check(kPositive);
  app->add_option("--length-penalty", flags.search.length_penalty, length_penalty_help)
      ->check(kFinite)
      ->check(kNonNegative);
  app->add_option("--batch-size", flags.search.batch_size, "sentences decoded together")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app->add_option("--max-source-length", flags.max_source_length,
                  "longest source in tokens, longer ones are cut (default: as trained)")
      ->check(kPositive);
  app->add_option("--shortlist", flags.search.shortlist,
                  "decode over the K most frequent target words plus the lexical table's "
                  "translations of the batch's source words (kiln shortlist builds the table)")
      ->check(kPositive);
}

}  // namespace

// The value of `--name X` or `--name=X` in argv, if given: --config and --preset set the base
// options before the flags are parsed, so flags given on the command line win over both.
std::string prescan(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == name && i + 1 < argc) return argv[i + 1];
    if (arg.rfind(name + "=", 0) == 0) return arg.substr(name.size() + 1);
  }
  return "";
}

int run_cli(int argc, char** argv) {
  CLI::App app{"kiln: a Seq2Seq translator built on the kiln framework"};
  app.require_subcommand(1);
  TrainOptions o;
  std::string out = "runs/kiln", resume, config_file, preset, cell = "gru", attention = "none",
              max_time;
  bool overwrite = false;
  try {
    if (std::string(argc > 1 ? argv[1] : "") == "train") {
      std::string file = prescan(argc, argv, "--config"),
                  preset_name = prescan(argc, argv, "--preset");
      if (!file.empty()) o = TrainOptions::from_json(data::read_text_file("--config", file), file);
      if (!preset_name.empty()) apply_preset(preset_name, o);
      cell = seq2seq::cell_name(o.model.cell);
      attention = seq2seq::attention_name(o.model.attention);
    }
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const CLI::ValidationError& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  }

  CLI::App* train = app.add_subcommand("train", "train a model");
  add_data_flags(train, o);
  int threads = 0;  // --threads of the subcommand that runs
  add_threads_flag(train, threads);
  train->add_option("--config", config_file, "JSON file of options (flags given too win)");
  train->add_option("--preset", preset,
                    "d2l (d2l.ai 1.0) or d2l-classic: the book's settings on fra-eng");
  train->add_option("--out", out, "output folder: last/, best/, metrics.jsonl, loss.svg");
  train->add_option("--resume", resume, "continue from this checkpoint folder");
  train->add_flag("--overwrite", overwrite,
                  "replace the run already in --out (its files go once the data has loaded)");
  train->add_option("--cell", cell, "gru or lstm")->check(CLI::IsMember({"gru", "lstm"}));
  train->add_option("--attention", attention, "none, bahdanau, luong or luong-general")
      ->check(CLI::IsMember({"none", "bahdanau", "luong", "luong-general"}));
  train->add_flag("--bidirectional", o.model.bidirectional, "bidirectional encoder");
  train->add_option("--embed", o.model.embed_size, "embedding size")->check(kPositive);
  train->add_option("--hidden", o.model.hidden_size, "hidden size")->check(kPositive);
  train->add_option("--layers", o.model.num_layers, "recurrent layers")->check(kPositive);
  train->add_option("--dropout", o.model.dropout, "dropout between recurrent layers")
      ->check(CLI::Range(0.0, 0.99))
      ->check(kFinite);
  train->add_option("--optimizer", o.optimizer, "sgd, adam, adamw or rmsprop")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop"}));
  train->add_option("--lr", o.lr, "learning rate")->check(kPositive);
  train->add_option("--weight-decay", o.weight_decay, "weight decay")
      ->check(kNonNegative)
      ->check(kFinite);
  train->add_option("--schedule", o.schedule, "constant, step, inverse-sqrt or cosine")
      ->check(CLI::IsMember({"constant", "step", "inverse-sqrt", "cosine"}));
  train->add_option("--warmup", o.warmup, "warmup steps (inverse-sqrt, cosine)");
  train->add_option("--clip", o.clip, "max global gradient norm (0: off)")->check(kNonNegative);
  train->add_option("--epochs", o.epochs, "epochs")->check(kNonNegative);
  train
      ->add_option("--ema", o.ema,
                   "keep an exponential moving average of the weights with this decay (e.g. "
                   "0.999): validated, and saved as the checkpoints' model")
      ->check(kDecay);
  train->add_option("--batch", o.batch_size, "sentence pairs per batch")->check(kPositive);
  train->add_option("--num-steps", o.num_steps,
                    "cut/pad every sequence to this length (-1: per batch)");
  train->add_option("--label-smoothing", o.label_smoothing, "label smoothing")
      ->check(CLI::Range(0.0, 0.99));
  train
      ->add_option("--teacher-forcing", o.teacher_forcing,
                   "probability of feeding the reference token (< 1: scheduled sampling)")
      ->check(CLI::Range(0.0, 1.0));
  train
      ->add_option("--precision", o.precision,
                   "f32, or bf16: matrix products take bf16 inputs and accumulate in f32 "
                   "(mixed precision; weights, gradients and optimizer state stay f32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  train
      ->add_option("--tokenizer", o.tokenizer,
                   "word (d2l) or sentencepiece (subwords trained on the training side)")
      ->check(CLI::IsMember({"word", "sentencepiece"}));
  train->add_option("--subword-vocab", o.subword_vocab, "SentencePiece pieces per language")
      ->check(kPositive);
  train->add_flag("--lowercase,!--keep-case", o.lowercase,
                  "lowercase the text as d2l does (the d2l presets do; default: keep the case)");
  train->add_option("--min-freq", o.min_freq, "vocabulary: minimum token count");
  train->add_option("--max-vocab", o.max_vocab, "vocabulary: maximum size (-1: no cap)");
  train->add_option("--train-pairs", o.train_pairs,
                    "consecutive slices: first N pairs for training (-1: all but valid/test)");
  train->add_option("--valid-pairs", o.valid_pairs,
                    "consecutive slices: next N pairs for validation");
  train->add_option("--test-pairs", o.test_pairs,
                    "consecutive slices: next N pairs held out for testing");
  train
      ->add_option("--split-valid", o.split_valid,
                   "random split: N pairs for validation (default: 5% of the corpus)")
      ->check(kNonNegative);
  train->add_option("--split-test", o.split_test, "random split: N pairs held out for testing")
      ->check(kNonNegative);
  train->add_option("--split-seed", o.split_seed, "seed of the random split (saved in split.json)");
  train->add_option("--data-valid", o.data_valid,
                    "validation pairs from this TSV file instead of a split");
  train->add_option("--data-test", o.data_test, "test pairs from this TSV file instead of a split");
  train
      ->add_option("--max-length", o.max_length,
                   "drop training pairs with more than N tokens on either side")
      ->check(kPositive);
  train
      ->add_option("--batch-tokens", o.batch_tokens,
                   "batches of about N target tokens (padding included) instead of --batch pairs")
      ->check(kPositive);
  train
      ->add_option("--bleu-sentences", o.bleu_sentences,
                   "validation sentences translated for BLEU per validation (-1: all)")
      ->check(CLI::Validator(
          [](std::string& value) {
            try {
              if (std::stoll(value) >= -1) return std::string();
            } catch (const std::exception&) {
            }
            return "must be -1 (all) or >= 0, got '" + value + "'";
          },
          ">= -1"));
  train->add_option("--save-every", o.save_every, "steps between saves of last/ (0: epoch ends)")
      ->check(kNonNegative);
  train
      ->add_option("--valid-every", o.valid_every,
                   "steps between validations (0: epoch ends; epoch ends validate always)")
      ->check(kNonNegative);
  train
      ->add_option("--keep-checkpoints", o.keep_checkpoints,
                   "keep the newest K step-<N> folders, written at each save of last/ (0: none)")
      ->check(kNonNegative);
  train->add_option("--max-steps", o.max_steps, "stop (after saving) at this step (0: no limit)")
      ->check(kNonNegative);
  train->add_option("--max-time", max_time,
                    "stop (after saving) after this long: seconds, or like 45m, 1h30m (0: none)");
  train
      ->add_option("--log-every", o.log_every,
                   "steps between progress lines when stdout is not a terminal")
      ->check(kPositive);
  train
      ->add_option("--patience", o.patience,
                   "stop after K validations without improvement (0: never)")
      ->check(kNonNegative);
  train
      ->add_option("--early-stop-metric", o.early_stop_metric,
                   "loss or bleu: what --patience and best/ go by")
      ->check(CLI::IsMember({"loss", "bleu"}));
  train->add_option("--accum-steps", o.accum_steps, "batches summed into one update")
      ->check(kPositive);
  train
      ->add_option("--max-source-length", o.max_source_length,
                   "longest source in tokens; longer ones are cut (an error with --strict)")
      ->check(kPositive);
  train
      ->add_option("--max-target-length", o.max_target_length,
                   "longest target in tokens; longer ones are cut (an error with --strict)")
      ->check(kPositive);
  train->add_flag("--quiet", o.quiet, "no live progress line");
  train
      ->add_option("--profile", o.profile_steps,
                   "profile N steps after 2 warm-up steps: print the table of ops, kernels, "
                   "syncs and allocations, write a Chrome trace; the run goes on (0: off)")
      ->check(kNonNegative);
  train->add_option("--profile-out", o.profile_out,
                    "the --profile trace (JSON for ui.perfetto.dev; default: OUT/profile.json)");
  train->add_flag("--cuda-graph", o.cuda_graph,
                  "on a GPU: capture each batch shape's step into a CUDA graph and replay it "
                  "(lengths padded to a multiple of 8)");

  std::string checkpoint, device;
  std::vector<std::string> checkpoints;
  TranslateFlags tf;
  seq2seq::TranslateOptions& search = tf.decoding.search;
  CLI::App* translate =
      app.add_subcommand("translate", "translate stdin, one sentence per line, to stdout");
  translate
      ->add_option("--checkpoint", checkpoints,
                   "checkpoint folder; several (same vocabularies) decode as an ensemble")
      ->required();
  translate->add_option("--device", device, "cpu, cuda or cuda:N (default: as trained)");
  add_threads_flag(translate, threads);
  add_decoding_flags(translate, tf.decoding,
                     "alpha: hypotheses scored and ranked by log p / length^alpha");
  translate->add_option("--n-best", search.n_best, "hypotheses printed per sentence (<= beam)")
      ->check(kPositive);
  translate->add_flag("--scores", tf.scores,
                      "print score<TAB>text, score = log p / length^alpha (n-best always has it)");
  translate->add_flag("--replace-unk", tf.replace_unk,
                      "replace each <unk> by the source word it attends to most");
  translate->add_option("--attention-svg", tf.attention_svg,
                        "folder: the attention heatmap of input line N as line-N.svg");
  translate->add_flag("--strict", tf.strict,
                      "an input line with invalid UTF-8 is fatal (default: reported on stderr, "
                      "and an empty line is written)");

  TrainOptions demo_options;
  demo_options.task_size = 8000;
  demo_options.train_pairs = 6000;
  demo_options.valid_pairs = 500;
  demo_options.test_pairs = 1500;
  demo_options.epochs = 12;
  demo_options.batch_size = 64;
  demo_options.lr = 0.01;
  demo_options.quiet = false;
  demo_options.model.embed_size = 32;
  demo_options.model.hidden_size = 128;
  demo_options.model.num_layers = 1;
  demo_options.model.dropout = 0.0;
  demo_options.model.attention = seq2seq::Attention::bahdanau;
  std::string demo_out = "runs/demo";
  CLI::App* demo =
      app.add_subcommand("demo", "train on a generated task, then translate held-out sentences");
  add_data_flags(demo, demo_options);
  add_threads_flag(demo, threads);
  demo->add_option("--epochs", demo_options.epochs, "epochs")->check(kPositive);
  demo->add_option("--out", demo_out, "output folder (a run already there is replaced)");
  demo->add_option("--precision", demo_options.precision,
                   "f32, or bf16 (mixed precision: bf16 inputs to every matrix product)")
      ->check(CLI::IsMember({"f32", "bf16"}));

  TrainOptions eval_data;
  CLI::App* eval = app.add_subcommand(
      "eval", "sacreBLEU-style BLEU and chrF, exact match and perplexity on a data set");
  eval->add_option("--checkpoint", checkpoint, "checkpoint folder")->required();
  add_data_flags(eval, eval_data);
  add_threads_flag(eval, threads);
  std::string eval_split;
  eval->add_option("--split", eval_split,
                   "valid or test: the run's own split, its corpus from the checkpoint (no data "
                   "flags)")
      ->check(CLI::IsMember({"valid", "test"}));
  DecodingFlags eval_decoding;
  std::string eval_output;
  int64_t max_target_length = 0;  // 0: the checkpoint's
  add_decoding_flags(eval, eval_decoding, "alpha: beams ranked by log p / length^alpha");
  eval->add_option("--output", eval_output, "write the translations here, one per line");
  eval->add_option("--max-target-length", max_target_length,
                   "longest reference in tokens for the loss (default: as trained)")
      ->check(kPositive);

  std::vector<std::string> average_inputs;
  std::string average_out;
  CLI::App* average = app.add_subcommand(
      "average", "average the weights of checkpoints of one model into a new checkpoint");
  average
      ->add_option("--checkpoints", average_inputs,
                   "two or more checkpoint folders with the same model and vocabularies")
      ->required();
  average
      ->add_option("--out", average_out,
                   "the new checkpoint (for translate and eval; it cannot be resumed)")
      ->required();
  seq2seq::ServeOptions serve_options;
  std::string shortlist_checkpoint;
  CLI::App* shortlist = app.add_subcommand(
      "shortlist", "learn the lexical table of --shortlist from a checkpoint's training data");
  shortlist->add_option("--checkpoint", shortlist_checkpoint, "checkpoint folder (written into)")
      ->required();
  add_threads_flag(shortlist, threads);

  CLI::App* serve = app.add_subcommand("serve", "answer HTTP/JSON translation requests");
  serve->add_option("--checkpoint", serve_options.checkpoint, "checkpoint folder")->required();
  serve->add_option("--device", serve_options.device, "cpu, cuda or cuda:N (default: as trained)");
  serve->add_option("--host", serve_options.host, "address to listen on");
  serve->add_option("--port", serve_options.port, "port (0: any free one, printed)")
      ->check(CLI::Range(0, 65535));
  serve
      ->add_option("--batch-size", serve_options.batch_size, "sentences per batch, across requests")
      ->check(kPositive);
  serve
      ->add_option("--batch-wait-ms", serve_options.batch_wait_ms,
                   "how long a request may wait for others to fill its batch")
      ->check(CLI::Range(0, 60000));
  serve->add_option("--max-body-bytes", serve_options.max_body_bytes, "larger bodies get 413")
      ->check(kPositive);
  serve->add_option("--max-sentences", serve_options.max_sentences, "sentences per request")
      ->check(kPositive);
  serve->add_option("--max-sentence-bytes", serve_options.max_sentence_bytes, "bytes per sentence")
      ->check(kPositive);
  serve->add_option("--max-beam", serve_options.max_beam, "largest beam a request may ask for")
      ->check(kPositive);
  serve->add_option("--threads", serve_options.threads, "HTTP threads: requests handled at once")
      ->check(CLI::Range(1, 1024));
  serve
      ->add_option("--shortlist", serve_options.shortlist,
                   "decode every batch over a vocabulary shortlist of K (as kiln translate)")
      ->check(kPositive);
  add_threads_flag(serve, threads, "--compute-threads");  // --threads: the HTTP threads
  for (const char* name :
       {"--host", "--port", "--batch-size", "--batch-wait-ms", "--max-body-bytes",
        "--max-sentences", "--max-sentence-bytes", "--max-beam", "--threads"}) {
    serve->get_option(name)->capture_default_str();  // the defaults in --help
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    kiln::set_num_threads(threads);  // 0: KILN_NUM_THREADS or automatic, a bad value named here
    if (*train) {
      o.model.cell = seq2seq::parse_cell(cell);
      o.model.attention = seq2seq::parse_attention(attention);
      if (train->count("--split-valid") + train->count("--split-test") +
          train->count("--split-seed")) {
        KILN_CHECK(
            o.train_pairs == -1 && o.valid_pairs == 0 && o.test_pairs == 0 &&
                o.data_valid.empty() && o.data_test.empty(),
            "train: --split-valid/--split-test/--split-seed (a seeded random split) cannot ",
            "be combined with --train-pairs/--valid-pairs/--test-pairs (consecutive slices, ",
            "also set by the d2l presets) or --data-valid/--data-test");
        o.random_split = true;  // also over a --config file from before random splits
      }
      if (!max_time.empty()) o.max_time = seq2seq::parse_duration(max_time, "--max-time");
      // The flags given on this command line: --resume applies or refuses each (resume_options).
      std::vector<std::string> given;
      for (const CLI::Option* option : train->get_options()) {
        if (option->count() > 0) given.push_back(option->get_name());
      }
      if (resume.empty()) {
        // Validate with placeholder vocab sizes: the real ones come from the data.
        seq2seq::ModelConfig check = o.model;
        check.source_vocab = check.target_vocab = 5;
        check.validate();
        o.validate();
      }
      return run_train(o, out, resume, overwrite, given);
    }
    if (*demo) return run_demo(demo_options, demo_out);
    if (*shortlist) return run_shortlist(shortlist_checkpoint);
    if (*average) {
      int64_t weights = seq2seq::average_checkpoints(average_inputs, average_out);
      std::printf("averaged %zu checkpoints (%lld weights each) into %s\n", average_inputs.size(),
                  static_cast<long long>(weights), average_out.c_str());
      return 0;
    }
    if (*translate) {
      KILN_CHECK(search.n_best <= search.beam_size, "--n-best ", search.n_best, " exceeds --beam ",
                 search.beam_size);
      return run_translate(checkpoints, device, tf);
    }
    if (*serve) {
      return seq2seq::serve(serve_options, [](const std::string& line) {
        std::printf("%s\n", line.c_str()), std::fflush(stdout);
      });
    }
    if (*eval) {
      const bool data_flags =
          !eval_data.data.empty() || !eval_data.task.empty() || !eval_data.data_source.empty();
      KILN_CHECK(data_flags || !eval_split.empty(),
                 "eval: give --data, --data-src/--data-tgt or --task, or --split valid|test");
      KILN_CHECK(!data_flags || eval_split.empty(), "eval: --split ", eval_split,
                 " takes the run's own corpus from its config.json; give no --data, "
                 "--data-src/--data-tgt or --task with it");
      return run_eval(checkpoint, eval->count("--device") ? eval_data.device : "", eval_data,
                      eval_split, eval_decoding, eval_output, max_target_length);
    }
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

// The last line of defence: every error kiln expects is a kiln::Error naming the file, line or
// field; anything else (a library's exception that escaped, out of memory) still ends as a message
// and exit code 1, never as an abort.
int main(int argc, char** argv) {
  try {
    return run_cli(argc, argv);
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kiln: error: out of host memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: error (unexpected, please report): %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "kiln: error (unexpected, please report): unknown exception\n");
  }
  return 1;
}
