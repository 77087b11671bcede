#include "models/seq2seq/config.h"

#include "models/seq2seq/json_util.h"

namespace kiln::seq2seq {

const char* attention_name(Attention attention) {
  switch (attention) {
    case Attention::none: return "none";
    case Attention::bahdanau: return "bahdanau";
    case Attention::luong_dot: return "luong";
    case Attention::luong_general: return "luong-general";
  }
  return "?";
}

Attention parse_attention(const std::string& name) {
  if (name == "none") return Attention::none;
  if (name == "bahdanau" || name == "additive") return Attention::bahdanau;
  if (name == "luong" || name == "dot") return Attention::luong_dot;
  if (name == "luong-general" || name == "general") return Attention::luong_general;
  KILN_FAIL("attention '", name, "' is not one of: none, bahdanau, luong, luong-general");
}

const char* cell_name(nn::CellType cell) { return cell == nn::CellType::lstm ? "lstm" : "gru"; }

nn::CellType parse_cell(const std::string& name) {
  if (name == "gru") return nn::CellType::gru;
  if (name == "lstm") return nn::CellType::lstm;
  KILN_FAIL("cell '", name, "' is not one of: gru, lstm");
}

void ModelConfig::validate() const {
  KILN_CHECK(source_vocab > 4 && target_vocab > 4,
             "model config: vocab sizes must exceed the 4 reserved tokens, got ", source_vocab,
             " and ", target_vocab);
  KILN_CHECK(embed_size > 0 && hidden_size > 0 && num_layers > 0,
             "model config: embed_size, hidden_size and ", "num_layers must be positive, got ",
             embed_size, ", ", hidden_size, ", ", num_layers);
  KILN_CHECK(dropout >= 0 && dropout < 1, "model config: dropout must be in [0, 1), got ", dropout);
  KILN_CHECK(attention_size >= 0, "model config: attention_size must be >= 0, got ",
             attention_size);
}

std::string ModelConfig::to_json() const {
  nlohmann::json j = {{"source_vocab", source_vocab},
                      {"target_vocab", target_vocab},
                      {"embed_size", embed_size},
                      {"hidden_size", hidden_size},
                      {"num_layers", num_layers},
                      {"dropout", dropout},
                      {"cell", cell_name(cell)},
                      {"bidirectional", bidirectional},
                      {"attention", attention_name(attention)},
                      {"attention_size", attention_size},
                      {"pad_id", pad_id},
                      {"bos_id", bos_id},
                      {"eos_id", eos_id}};
  return j.dump(2);
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j = parse_json_object(text, source);
  ModelConfig c;
  try {
    c.source_vocab = json_int64(j, "source_vocab", source);
    c.target_vocab = json_int64(j, "target_vocab", source);
    c.embed_size = json_int64(j, "embed_size", source);
    c.hidden_size = json_int64(j, "hidden_size", source);
    c.num_layers = json_int64(j, "num_layers", source);
    c.dropout = j.at("dropout").get<double>();
    c.cell = parse_cell(j.at("cell").get<std::string>());
    c.bidirectional = j.at("bidirectional").get<bool>();
    c.attention = parse_attention(j.at("attention").get<std::string>());
    c.attention_size = json_int64_or(j, "attention_size", 0, source);
    c.pad_id = json_int64_or(j, "pad_id", 0, source);
    c.bos_id = json_int64_or(j, "bos_id", 2, source);
    c.eos_id = json_int64_or(j, "eos_id", 3, source);
  } catch (const nlohmann::json::exception& e) {
    KILN_FAIL(source, ": ", e.what());
  }
  c.validate();
  return c;
}

}  // namespace kiln::seq2seq
