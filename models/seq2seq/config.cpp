#include "models/seq2seq/config.h"

#include <algorithm>
#include <utility>

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
  // The special ids index both embeddings and the output layer: each must exist in both
  // vocabularies (an out-of-range id would surface later as an embedding index error).
  int64_t smallest = std::min(source_vocab, target_vocab);
  for (auto [name, id] : {std::pair<const char*, int64_t>{"pad_id", pad_id},
                          {"bos_id", bos_id},
                          {"eos_id", eos_id}}) {
    KILN_CHECK(id >= 0 && id < smallest, "model config: ", name, " ", id,
               " is out of range for vocabularies of ", source_vocab, " and ", target_vocab,
               " tokens (expected 0 <= id < ", smallest, ")");
  }
  KILN_CHECK(pad_id != bos_id && pad_id != eos_id && bos_id != eos_id,
             "model config: pad_id, bos_id and eos_id must differ, got ", pad_id, ", ", bos_id,
             ", ", eos_id);
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
  return from_json(JsonReader(text, source), source);
}

ModelConfig ModelConfig::from_json(const JsonReader& r, const std::string& source) {
  ModelConfig c;
  c.source_vocab = r.integer("source_vocab");
  c.target_vocab = r.integer("target_vocab");
  c.embed_size = r.integer("embed_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_layers = r.integer("num_layers");
  c.dropout = r.number("dropout");
  c.cell = parse_cell(r.string("cell"));
  c.bidirectional = r.boolean("bidirectional");
  c.attention = parse_attention(r.string("attention"));
  c.attention_size = r.integer("attention_size", 0);
  c.pad_id = r.integer("pad_id", 0);
  c.bos_id = r.integer("bos_id", 2);
  c.eos_id = r.integer("eos_id", 3);
  r.reject_unknown_fields();
  try {
    c.validate();
  } catch (const Error& e) {
    KILN_FAIL(source, ": ", e.what());
  }
  return c;
}

}  // namespace kiln::seq2seq
