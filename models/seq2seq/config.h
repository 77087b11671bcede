// The hyperparameters of a Seq2Seq model: everything needed to rebuild it from config.json.
#pragma once

#include <cstdint>
#include <string>

#include "nn/rnn.h"

namespace kiln::seq2seq {

class JsonReader;  // models/seq2seq/json_util.h

enum class Attention { none, bahdanau, luong_dot, luong_general };

const char* attention_name(Attention attention);  // "none", "bahdanau", "luong", "luong-general"
Attention parse_attention(
    const std::string& name);  // also accepts "dot"/"general"; error lists the choices
const char* cell_name(nn::CellType cell);
nn::CellType parse_cell(const std::string& name);

struct ModelConfig {
  int64_t source_vocab = 0;
  int64_t target_vocab = 0;
  int64_t embed_size = 256;
  int64_t hidden_size = 256;
  int64_t num_layers = 2;
  double dropout = 0.2;
  nn::CellType cell = nn::CellType::gru;
  bool bidirectional = false;  // encoder only; its final states are projected to hidden_size
  Attention attention = Attention::none;
  int64_t attention_size = 0;  // additive attention's inner size (0: hidden_size)
  int64_t pad_id = 0, bos_id = 2, eos_id = 3;

  // Throws kiln::Error naming the first invalid field.
  void validate() const;
  std::string to_json() const;
  // Reads and validates; errors name `source` (the file) and the field.
  static ModelConfig from_json(const std::string& text, const std::string& source);
  static ModelConfig from_json(const JsonReader& reader, const std::string& source);
};

}  // namespace kiln::seq2seq
