// kiln: train, translate with and evaluate Seq2Seq translators.
//   kiln train --task numbers-en --attention bahdanau --out runs/numbers
//   kiln train --data fra.txt --preset d2l --out runs/d2l
//   echo "go ." | kiln translate --checkpoint runs/d2l/best --beam 4
//   kiln eval --checkpoint runs/numbers/best --task numbers-en
//   kiln serve --checkpoint runs/d2l/best --port 8080
// Every flag has --help; a bad flag or value is named in the error and the exit code is non-zero.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>

#include "models/data/corpus.h"
#include "models/data/tasks.h"
#include "models/data/text_file.h"
#include "models/data/tokenizer.h"
#include "models/metrics.h"
#include "models/seq2seq/attention_svg.h"
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
    // d2l's BLEU (k = 2) against the given reference, or the sentence's own in the data.
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
        double bleu = metrics::bleu_d2l(data::tokenize_d2l(out), data::tokenize_d2l(p.target), 2);
        char score[64];
        std::snprintf(score, sizeof score, ", bleu %.3f", bleu);
        line += score;
        break;
      }
    }
    std::printf("%s\n", line.c_str());
  }
}

int run_train(const TrainOptions& options, const std::string& out, const std::string& resume,
              bool overwrite) {
  auto log = [](const std::string& line) {
    std::printf("%s\n", line.c_str()), std::fflush(stdout);
  };
  std::vector<seq2seq::EpochMetrics> history = seq2seq::train(options, out, resume, log, overwrite);
  if (history.empty()) return 0;  // nothing to train, and the log said why
  seq2seq::Translator t = seq2seq::Translator::load(out + "/last", options.device);
  data::Split split = seq2seq::load_data(t.options, nullptr);
  if (!t.options.sample_sentences.empty()) {
    std::vector<data::SentencePair> all = split.train;
    all.insert(all.end(), split.valid.begin(), split.valid.end());
    print_samples(t, t.options.sample_sentences, t.options.sample_references, all);
  }
  std::printf("checkpoints: %s/last, %s/best; metrics: %s/metrics.jsonl; loss curve: %s/loss.svg\n",
              out.c_str(), out.c_str(), out.c_str(), out.c_str());
  return 0;
}

// stdin is cleaned as a corpus side is (data::parse_input_lines): one output line (or n-best
// block) per input line, "" for a blank line or a line with invalid UTF-8, which is reported as
// "stdin:LINE: ..." on stderr (fatal with --strict).
int run_translate(const std::string& checkpoint, const std::string& device, int64_t beam,
                  int64_t n_best, double length_penalty, const std::string& attention_svg,
                  int64_t max_source_length, bool strict) {
  seq2seq::Translator t = seq2seq::Translator::load(checkpoint, device);
  if (max_source_length > 0) t.options.max_source_length = max_source_length;
  data::ReadOptions read;
  read.skip_bad_lines = !strict;
  const std::string text{std::istreambuf_iterator<char>(std::cin), {}};
  const data::InputLines input = data::parse_input_lines(text, "stdin", read);
  for (const std::string& problem : input.problems)
    std::fprintf(stderr, "kiln: warning: %s (an empty line is written)\n", problem.c_str());
  if (input.skipped > static_cast<int64_t>(input.problems.size()))
    std::fprintf(stderr, "kiln: warning: %lld bad input line(s) in all\n",
                 static_cast<long long>(input.skipped));
  const std::vector<std::string>& lines = input.sentences;
  if (lines.empty()) return 0;
  if (int64_t n = t.count_long_sources(lines)) {
    std::fprintf(stderr,
                 "kiln: warning: cut %lld source(s) longer than %lld tokens to that length "
                 "(--max-source-length)\n",
                 static_cast<long long>(n), static_cast<long long>(t.options.max_source_length));
  }
  auto results = t.translate(lines, beam, n_best, length_penalty);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (n_best == 1) {
      std::printf("%s\n", t.to_text(results[i][0]).c_str());
      continue;
    }
    for (size_t k = 0; k < results[i].size(); ++k) {
      std::printf("%zu\t%.4f\t%s\n", k + 1, results[i][k].score, t.to_text(results[i][k]).c_str());
    }
    std::printf("\n");
  }
  if (!attention_svg.empty()) {
    auto first_line = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& line) { return !line.empty(); });
    KILN_CHECK(first_line != lines.end(), "--attention-svg: every input line is empty");
    auto first = t.translate({*first_line}, 1, 1, 1.0, /*keep_attention=*/true)[0][0];
    KILN_CHECK(!first.attention.empty(), "--attention-svg: the model in ", checkpoint,
               " has no attention (", seq2seq::attention_name(t.options.model.attention), ")");
    seq2seq::write_attention_svg(attention_svg, data::tokenize_d2l(*first_line),
                                 t.target_vocab.decode(first.tokens, false), first.attention);
  }
  return 0;
}

int run_eval(const std::string& checkpoint, const std::string& device, TrainOptions data_options,
             int64_t beam, int64_t max_source_length, int64_t max_target_length) {
  seq2seq::Translator t = seq2seq::Translator::load(checkpoint, device);
  if (max_source_length > 0) t.options.max_source_length = max_source_length;
  if (max_target_length > 0) t.options.max_target_length = max_target_length;
  data_options.valid_pairs = 0;
  data_options.test_pairs = 0;
  data_options.train_pairs = -1;
  data_options.valid_fraction = 0;
  std::vector<data::SentencePair> pairs =
      seq2seq::load_data(
          data_options, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); },
          "eval")
          .train;
  if (int64_t n = t.count_long_pairs(pairs, data_options.strict_data)) {
    std::fprintf(
        stderr, "kiln: %s\n",
        seq2seq::long_pairs_warning(n, t.options.max_source_length, t.options.max_target_length)
            .c_str());
  }
  std::vector<std::string> sources, references, hypotheses;
  for (const auto& p : pairs) {
    sources.push_back(p.source);
    references.push_back(data::detokenize(data::tokenize_d2l(p.target)));
  }
  for (const auto& h : t.translate(sources, beam)) hypotheses.push_back(t.to_text(h[0]));
  double nll = t.mean_nll(pairs);
  std::printf(
      "pairs %zu\ncorpus BLEU %.2f\nexact match %.2f%%\nloss per token %.6f\nperplexity %.4f\n",
      pairs.size(), metrics::corpus_bleu(hypotheses, references),
      100 * metrics::exact_match(hypotheses, references), nll, std::exp(nll));
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
    references.push_back(data::detokenize(data::tokenize_d2l(p.target)));
  }
  KILN_CHECK(!sources.empty(),
             "demo: no held-out pairs (every test source also occurs in training)");
  for (const auto& h : t.translate(sources)) hypotheses.push_back(t.to_text(h[0]));
  std::printf("\nheld-out translations (sources never seen in training):\n");
  for (size_t i = 0; i < std::min<size_t>(8, sources.size()); ++i) {
    std::printf("  %-12s => %-40s %s\n", sources[i].c_str(), hypotheses[i].c_str(),
                hypotheses[i] == references[i] ? "ok" : ("expected: " + references[i]).c_str());
  }
  std::printf("held-out: %zu sentences, exact match %.2f%%, corpus BLEU %.2f\n", sources.size(),
              100 * metrics::exact_match(hypotheses, references),
              metrics::corpus_bleu(hypotheses, references));
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
  std::string out = "runs/kiln", resume, config_file, preset, cell = "gru", attention = "none";
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
      ->add_option("--tokenizer", o.tokenizer,
                   "word (d2l) or sentencepiece (subwords trained on the training side)")
      ->check(CLI::IsMember({"word", "sentencepiece"}));
  train->add_option("--subword-vocab", o.subword_vocab, "SentencePiece pieces per language")
      ->check(kPositive);
  train->add_option("--min-freq", o.min_freq, "vocabulary: minimum token count");
  train->add_option("--max-vocab", o.max_vocab, "vocabulary: maximum size (-1: no cap)");
  train->add_option("--train-pairs", o.train_pairs,
                    "first N pairs for training (-1: all but valid/test)");
  train->add_option("--valid-pairs", o.valid_pairs, "next N pairs for validation");
  train->add_option("--test-pairs", o.test_pairs, "next N pairs held out for testing");
  train->add_option("--bleu-sentences", o.bleu_sentences,
                    "validation sentences translated for BLEU per epoch");
  train
      ->add_option("--max-source-length", o.max_source_length,
                   "longest source in tokens; longer ones are cut (an error with --strict)")
      ->check(kPositive);
  train
      ->add_option("--max-target-length", o.max_target_length,
                   "longest target in tokens; longer ones are cut (an error with --strict)")
      ->check(kPositive);
  train->add_flag("--quiet", o.quiet, "no live progress line");

  std::string checkpoint, device;
  int64_t beam = 1, n_best = 1;
  double length_penalty = 1.0;
  std::string attention_svg;
  CLI::App* translate =
      app.add_subcommand("translate", "translate stdin, one sentence per line, to stdout");
  translate->add_option("--checkpoint", checkpoint, "checkpoint folder")->required();
  translate->add_option("--device", device, "cpu, cuda or cuda:N (default: as trained)");
  translate->add_option("--beam", beam, "beam width (1: greedy)")->check(kPositive);
  translate->add_option("--n-best", n_best, "hypotheses printed per sentence (<= beam)")
      ->check(kPositive);
  translate
      ->add_option("--length-penalty", length_penalty,
                   "alpha: beams ranked by log p / length^alpha")
      ->check(kFinite);
  int64_t max_source_length = 0, max_target_length = 0;  // 0: the checkpoint's
  translate
      ->add_option("--max-source-length", max_source_length,
                   "longest source in tokens, longer ones are cut (default: as trained)")
      ->check(kPositive);
  translate->add_option("--attention-svg", attention_svg,
                        "write the attention heatmap of the first sentence");
  bool strict_input = false;
  translate->add_flag("--strict", strict_input,
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
  demo->add_option("--epochs", demo_options.epochs, "epochs")->check(kPositive);
  demo->add_option("--out", demo_out, "output folder (a run already there is replaced)");

  TrainOptions eval_data;
  CLI::App* eval =
      app.add_subcommand("eval", "corpus BLEU, exact match and perplexity on a data set");
  eval->add_option("--checkpoint", checkpoint, "checkpoint folder")->required();
  add_data_flags(eval, eval_data);
  eval->add_option("--beam", beam, "beam width (1: greedy)")->check(kPositive);
  eval->add_option("--max-source-length", max_source_length,
                   "longest source in tokens, longer ones are cut (default: as trained)")
      ->check(kPositive);
  eval->add_option("--max-target-length", max_target_length,
                   "longest reference in tokens for the loss (default: as trained)")
      ->check(kPositive);

  seq2seq::ServeOptions serve_options;
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
    if (*train) {
      o.model.cell = seq2seq::parse_cell(cell);
      o.model.attention = seq2seq::parse_attention(attention);
      if (resume.empty()) {
        // Validate with placeholder vocab sizes: the real ones come from the data.
        seq2seq::ModelConfig check = o.model;
        check.source_vocab = check.target_vocab = 5;
        check.validate();
        o.validate();
      }
      return run_train(o, out, resume, overwrite);
    }
    if (*demo) return run_demo(demo_options, demo_out);
    if (*translate) {
      KILN_CHECK(n_best <= beam, "--n-best ", n_best, " exceeds --beam ", beam);
      return run_translate(checkpoint, device, beam, n_best, length_penalty, attention_svg,
                           max_source_length, strict_input);
    }
    if (*serve) {
      return seq2seq::serve(serve_options, [](const std::string& line) {
        std::printf("%s\n", line.c_str()), std::fflush(stdout);
      });
    }
    if (*eval) {
      KILN_CHECK(
          !eval_data.data.empty() || !eval_data.task.empty() || !eval_data.data_source.empty(),
          "eval: give --data, --data-src/--data-tgt or --task");
      return run_eval(checkpoint, eval->count("--device") ? eval_data.device : "", eval_data, beam,
                      max_source_length, max_target_length);
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
