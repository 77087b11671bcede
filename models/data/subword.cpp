#include "models/data/subword.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <utility>

#include "core/error.h"
#include "models/data/tokenizer.h"

namespace kiln::data {

WordTokenizer::WordTokenizer(bool lowercase, PunctuationSpacing spacing)
    : lowercase_(lowercase), spacing_(std::move(spacing)) {}

std::vector<std::string> WordTokenizer::tokenize(std::string_view text) const {
  return tokenize_d2l(text, lowercase_);
}
std::string WordTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  return detokenize_d2l(tokens, spacing_);
}

void SentencePieceTokenizer::train(const std::vector<std::string>& sentences, int64_t vocab_size,
                                   const std::string& model_path, bool lowercase) {
  KILN_CHECK(vocab_size > 4, "sentencepiece: vocabulary size must be > 4, got ", vocab_size);
  KILN_CHECK(!sentences.empty(), "sentencepiece: no sentences to train ", model_path, " on");
  std::string prefix = model_path.substr(
      0,
      model_path.size() -
          (model_path.size() > 6 && model_path.substr(model_path.size() - 6) == ".model" ? 6 : 0));
  std::string input = prefix + ".train.txt";
  {
    std::ofstream out(input, std::ios::binary | std::ios::trunc);
    KILN_CHECK(out.good(), "sentencepiece: cannot write ", input);
    for (const std::string& s : sentences) {
      out << data::detokenize(tokenize_d2l(s, lowercase)) << "\n";
    }
  }
  // Unigram model; <unk> only (kiln's Vocab adds <pad>, <bos>, <eos>); a soft vocabulary limit,
  // since a small corpus may not have vocab_size distinct pieces.
  std::string args =
      "--input=" + input + " --model_prefix=" + prefix +
      " --vocab_size=" + std::to_string(vocab_size) +
      " --model_type=unigram --character_coverage=1.0 --hard_vocab_limit=false --bos_id=-1"
      " --eos_id=-1 --pad_id=-1 --unk_id=0 --num_threads=2 --minloglevel=2"
      " --normalization_rule_name=identity";
  auto status = sentencepiece::SentencePieceTrainer::Train(args);
  std::filesystem::remove(input);
  std::filesystem::remove(prefix + ".vocab");
  KILN_CHECK(status.ok(), "sentencepiece: training ", model_path, " failed: ", status.ToString());
  if (prefix + ".model" != model_path) std::filesystem::rename(prefix + ".model", model_path);
}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, bool lowercase,
                                               PunctuationSpacing spacing)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      path_(model_path),
      lowercase_(lowercase),
      spacing_(std::move(spacing)) {
  auto status = processor_->Load(model_path);
  KILN_CHECK(status.ok(), "sentencepiece: cannot load ", model_path, ": ", status.ToString());
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<std::string> SentencePieceTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  std::string normalized = data::detokenize(tokenize_d2l(text, lowercase_));
  auto status = processor_->Encode(normalized, &pieces);
  KILN_CHECK(status.ok(), "sentencepiece (", path_, "): cannot encode '", normalized,
             "': ", status.ToString());
  return pieces;
}

std::string SentencePieceTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  std::string text;
  auto status = processor_->Decode(tokens, &text);
  KILN_CHECK(status.ok(), "sentencepiece (", path_, "): cannot decode: ", status.ToString());
  // The model was trained on d2l-spaced text ("va !"): its decoder gives that back, and the
  // spacing of the punctuation is undone as for words.
  return detokenize_d2l(tokenize_words(text), spacing_);
}

}  // namespace kiln::data
