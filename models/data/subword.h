// Tokenizers behind one interface: d2l's word tokenizer, or SentencePiece subwords (Debian's
// libsentencepiece) trained on the training side of the corpus. Both start from d2l's
// preprocessing (lowercase, spaces before punctuation), so their detokenized output is
// comparable with detokenize(tokenize_d2l(reference)) for BLEU.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

// tokenize_d2l / detokenize.
class WordTokenizer : public Tokenizer {
 public:
  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Trains a unigram model of (at most) vocab_size pieces on the preprocessed `sentences` and
  // writes it to model_path. Errors name the path and SentencePiece's message.
  static void train(const std::vector<std::string>& sentences, int64_t vocab_size,
                    const std::string& model_path);
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;
  std::vector<std::string> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string path_;
};

}  // namespace kiln::data
