// Tokenizers behind one interface: d2l's word tokenizer, or SentencePiece subwords (Debian's
// libsentencepiece) trained on the training side of the corpus. Both start from d2l's
// preprocessing (spaces before punctuation; lowercase when asked), and both detokenize to normal
// text by undoing that spacing with the separators learned from the training targets
// (detokenize_d2l), so their output compares with the raw references for BLEU.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/data/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace kiln::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::string> tokenize(std::string_view text) const = 0;
  virtual std::string detokenize(const std::vector<std::string>& tokens) const = 0;
};

// tokenize_d2l / detokenize_d2l.
class WordTokenizer : public Tokenizer {
 public:
  explicit WordTokenizer(bool lowercase = true, PunctuationSpacing spacing = {});
  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;

 private:
  bool lowercase_;
  PunctuationSpacing spacing_;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Trains a unigram model of (at most) vocab_size pieces on the preprocessed `sentences` and
  // writes it to model_path. Errors name the path and SentencePiece's message.
  static void train(const std::vector<std::string>& sentences, int64_t vocab_size,
                    const std::string& model_path, bool lowercase = true);
  explicit SentencePieceTokenizer(const std::string& model_path, bool lowercase = true,
                                  PunctuationSpacing spacing = {});
  ~SentencePieceTokenizer() override;
  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string path_;
  bool lowercase_;
  PunctuationSpacing spacing_;
};

}  // namespace kiln::data
