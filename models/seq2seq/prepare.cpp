// Corpus -> split -> tokenizers -> vocabularies -> ids (see prepare.h).
#include "models/seq2seq/prepare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <tuple>

#include "core/error.h"
#include "models/data/tasks.h"
#include "models/seq2seq/checkpoint.h"

namespace kiln::seq2seq {

namespace {
// What the data of a run is called in messages: the file(s), or the generated task.
std::string data_name(const TrainOptions& o) {
  if (!o.task.empty()) return "the task '" + o.task + "'";
  if (!o.data.empty()) return o.data;
  return o.data_source + " / " + o.data_target;
}

using Log = std::function<void(const std::string&)>;

// A corpus file (or two aligned ones), its skipped bad lines told to `log`.
std::vector<data::SentencePair> read_corpus(const std::string& tsv, const std::string& source,
                                            const std::string& target,
                                            const data::ReadOptions& read, const Log& log) {
  data::Corpus corpus =
      tsv.empty() ? data::read_parallel(source, target, read) : data::read_tsv(tsv, read);
  if (corpus.skipped > 0 && log) {
    log("skipped " + std::to_string(corpus.skipped) + " bad line(s); first: " +
        (corpus.problems.empty() ? std::string("?") : corpus.problems[0]));
  }
  return std::move(corpus.pairs);
}

// The size of the data's file(s) in bytes (0 for a task), for split.json and its messages.
int64_t data_bytes(const TrainOptions& o) {
  int64_t bytes = 0;
  for (const std::string& path : {o.data, o.data_source, o.data_target}) {
    std::error_code ec;
    if (!path.empty()) bytes += static_cast<int64_t>(std::filesystem::file_size(path, ec));
  }
  return bytes;
}

// The random split of `pairs` the options ask for: drawn now, or read from the checkpoint's
// split.json and checked against the corpus.
SplitRecord random_split_record(const TrainOptions& o, const std::vector<data::SentencePair>& pairs,
                                int64_t valid, int64_t test, const char* op,
                                const std::string& checkpoint) {
  SplitRecord now{data_name(o),
                  data_bytes(o),
                  static_cast<int64_t>(pairs.size()),
                  data::fingerprint(pairs),
                  o.split_seed,
                  {}};
  if (checkpoint.empty()) {
    now.indices = data::random_split(now.pairs, valid, test, o.split_seed);
    return now;
  }
  std::string file = checkpoint + "/split.json";
  SplitRecord saved = load_checkpoint_split(checkpoint, op);
  KILN_CHECK(saved.pairs == now.pairs && saved.fingerprint == now.fingerprint, op, ": ", now.corpus,
             " is not the corpus the run's split was drawn from (", file, ": ", saved.pairs,
             " pairs, ", saved.bytes, " bytes, fingerprint ", saved.fingerprint, "; now ",
             now.pairs, " pairs, ", now.bytes, " bytes, fingerprint ", now.fingerprint,
             "): its validation and test indices would pick other sentences; use the original ",
             "file, or start a new run");
  KILN_CHECK(static_cast<int64_t>(saved.indices.valid.size()) == valid &&
                 static_cast<int64_t>(saved.indices.test.size()) == test,
             op, ": ", file, " holds ", saved.indices.valid.size(), " valid and ",
             saved.indices.test.size(), " test indices, but its config.json asks for ", valid,
             " and ", test);
  return saved;
}

}  // namespace

data::Split load_data(const TrainOptions& o, const Log& log, const char* op,
                      const std::string& checkpoint, std::optional<SplitRecord>* record) {
  data::ReadOptions read{!o.strict_data, o.max_pairs};
  std::vector<data::SentencePair> pairs =
      o.task.empty() ? read_corpus(o.data, o.data_source, o.data_target, read, log)
                     : data::generate_task(o.task, o.task_size, o.seed);
  int64_t total = static_cast<int64_t>(pairs.size());
  KILN_CHECK(total > 0, op, ": ", data_name(o), " has no usable sentence pairs");
  if (!o.data_valid.empty() || !o.data_test.empty()) {
    data::Split split;
    read.max_pairs = -1;  // --max-pairs limits the training corpus alone
    for (auto [path, into] :
         {std::pair{&o.data_valid, &split.valid}, {&o.data_test, &split.test}}) {
      if (path->empty()) continue;
      *into = read_corpus(*path, "", "", read, log);
      KILN_CHECK(!into->empty(), op, ": ", *path, " has no usable sentence pairs");
    }
    split.train = std::move(pairs);
    return split;
  }
  const bool random =
      o.random_split && o.train_pairs == -1 && o.valid_pairs == 0 && o.test_pairs == 0;
  // valid_fraction of the pairs, at least one, when no validation size is given.
  const int64_t fraction =
      o.valid_fraction > 0
          ? std::max<int64_t>(1, static_cast<int64_t>(std::round(o.valid_fraction * total)))
          : 0;
  int64_t train = o.train_pairs, valid = o.valid_pairs, test = o.test_pairs;
  if (random) {
    valid = o.split_valid == -1 ? fraction : o.split_valid;
    test = o.split_test;
  } else if (train < 0 && valid == 0 && test == 0) {
    valid = fraction;
  }
  if (train < 0) train = total - valid - test;
  KILN_CHECK(std::string(op) != "train" || train > 0, op, ": ", data_name(o), " has ", total,
             " usable sentence pair(s) and ", valid, " go to validation, ", test,
             " to testing: none is left to train on (give more data, or fewer ",
             random ? "--split-valid / --split-test" : "--valid-pairs / --test-pairs", ")");
  if (!random) return data::split_pairs(pairs, train, valid, test);
  SplitRecord made = random_split_record(o, pairs, valid, test, op, checkpoint);
  data::Split split = data::apply_split(pairs, made.indices);
  if (record) *record = std::move(made);
  return split;
}

std::pair<std::shared_ptr<data::Tokenizer>, std::shared_ptr<data::Tokenizer>> load_tokenizers(
    const TrainOptions& o, const std::string& dir) {
  if (o.tokenizer == "sentencepiece") {
    return {std::make_shared<data::SentencePieceTokenizer>(dir + "/source.spm.model", o.lowercase),
            std::make_shared<data::SentencePieceTokenizer>(dir + "/target.spm.model", o.lowercase,
                                                           o.punctuation_spacing)};
  }
  return {std::make_shared<data::WordTokenizer>(o.lowercase),
          std::make_shared<data::WordTokenizer>(o.lowercase, o.punctuation_spacing)};
}

data::TokenizedPairs tokenize_with(const data::Tokenizer& source, const data::Tokenizer& target,
                                   const std::vector<data::SentencePair>& pairs) {
  data::TokenizedPairs out;
  for (const data::SentencePair& pair : pairs) {
    out.source.push_back(source.tokenize(pair.source));
    out.target.push_back(target.tokenize(pair.target));
  }
  return out;
}

int64_t cut_long_pairs(data::TokenizedPairs& pairs, int64_t max_source, int64_t max_target,
                       bool strict, const char* op) {
  int64_t cut = 0;
  for (size_t i = 0; i < pairs.source.size(); ++i) {
    std::vector<std::string>& source = pairs.source[i];
    std::vector<std::string>& target = pairs.target[i];
    int64_t source_length = static_cast<int64_t>(source.size());
    int64_t target_length = static_cast<int64_t>(target.size());
    if (source_length <= max_source && target_length <= max_target) continue;
    KILN_CHECK(!strict, op, ": pair ", i + 1, " has ", source_length, " source and ", target_length,
               " target tokens, over the limits of ", max_source, " and ", max_target,
               " (--max-source-length / --max-target-length; without --strict it "
               "would be cut)");
    if (source_length > max_source) source.resize(static_cast<size_t>(max_source));
    if (target_length > max_target) target.resize(static_cast<size_t>(max_target));
    ++cut;
  }
  return cut;
}

int64_t drop_long_pairs(data::TokenizedPairs& tokens, std::vector<data::SentencePair>& pairs,
                        int64_t max_length) {
  size_t kept = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (static_cast<int64_t>(tokens.source[i].size()) > max_length ||
        static_cast<int64_t>(tokens.target[i].size()) > max_length) {
      continue;
    }
    if (kept != i) {  // a self-move would empty them
      tokens.source[kept] = std::move(tokens.source[i]);
      tokens.target[kept] = std::move(tokens.target[i]);
      pairs[kept] = std::move(pairs[i]);
    }
    ++kept;
  }
  const int64_t dropped = static_cast<int64_t>(pairs.size() - kept);
  tokens.source.resize(kept);
  tokens.target.resize(kept);
  pairs.resize(kept);
  return dropped;
}

std::string long_pairs_warning(int64_t count, int64_t max_source, int64_t max_target) {
  return "warning: cut " + std::to_string(count) + " sentence pair(s) longer than " +
         std::to_string(max_source) + " source / " + std::to_string(max_target) +
         " target tokens to those lengths (--max-source-length / --max-target-length)";
}

namespace {

// Subwords learned from the training side of each language, into `dir`.
void train_subwords(const TrainOptions& o, const data::Split& split, const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> sources, targets;
  for (const data::SentencePair& pair : split.train) {
    sources.push_back(pair.source);
    targets.push_back(pair.target);
  }
  data::SentencePieceTokenizer::train(sources, o.subword_vocab, dir + "/source.spm.model",
                                      o.lowercase);
  data::SentencePieceTokenizer::train(targets, o.subword_vocab, dir + "/target.spm.model",
                                      o.lowercase);
}

// The vocabularies of a new run: from the training tokens, plus the validation ones when d2l 1.0's
// setting asks for them.
void build_vocabs(const TrainOptions& o, const data::TokenizedPairs& train_tokens, Prepared& p) {
  data::TokenizedPairs vocab_tokens = train_tokens;
  if (o.vocab_from_valid) {
    data::TokenizedPairs valid =
        tokenize_with(*p.source_tokenizer, *p.target_tokenizer, p.split.valid);
    vocab_tokens.source.insert(vocab_tokens.source.end(), valid.source.begin(), valid.source.end());
    vocab_tokens.target.insert(vocab_tokens.target.end(), valid.target.begin(), valid.target.end());
  }
  p.source_vocab = data::Vocab::build(vocab_tokens.source, o.min_freq, o.max_vocab);
  p.target_vocab = data::Vocab::build(vocab_tokens.target, o.min_freq, o.max_vocab);
}

}  // namespace

Prepared prepare(TrainOptions& o, const std::string& out_dir, const std::string& resume_dir,
                 const std::function<void(const std::string&)>& log) {
  Prepared p;
  p.split = load_data(o, log, "train", resume_dir, &p.split_record);
  std::vector<std::string> targets;  // how their punctuation was spaced, for detokenizing
  for (const data::SentencePair& pair : p.split.train) targets.push_back(pair.target);
  o.punctuation_spacing = data::learn_punctuation_spacing(targets);
  if (o.tokenizer == "sentencepiece") {
    p.tokenizer_dir = resume_dir.empty() ? out_dir + "/tokenizers" : resume_dir;
    if (resume_dir.empty()) train_subwords(o, p.split, p.tokenizer_dir);
  }
  std::tie(p.source_tokenizer, p.target_tokenizer) = load_tokenizers(o, p.tokenizer_dir);
  data::TokenizedPairs train_tokens =
      tokenize_with(*p.source_tokenizer, *p.target_tokenizer, p.split.train);
  if (o.max_length > 0) {
    p.max_length = o.max_length;
    p.dropped_long = drop_long_pairs(train_tokens, p.split.train, o.max_length);
    KILN_CHECK(!p.split.train.empty(), "train: --max-length ", o.max_length, " drops all ",
               p.dropped_long, " training pairs (each has more tokens on one side)");
  }
  int64_t cut = cut_long_pairs(train_tokens, o.max_source_length, o.max_target_length,
                               o.strict_data, "train");
  if (cut > 0 && log) log(long_pairs_warning(cut, o.max_source_length, o.max_target_length));
  if (resume_dir.empty()) {
    build_vocabs(o, train_tokens, p);
  } else {
    std::tie(p.source_vocab, p.target_vocab) = load_checkpoint_vocabs(resume_dir);
  }
  o.model.source_vocab = p.source_vocab.size();
  o.model.target_vocab = p.target_vocab.size();
  p.train =
      data::encode_pairs(train_tokens.source, train_tokens.target, p.source_vocab, p.target_vocab);
  p.lexical = LexicalTable::learn(p.train, p.source_vocab.size(), p.target_vocab.size());
  return p;
}

}  // namespace kiln::seq2seq
