// One test per finding of the fuzz targets in fuzz/ (README, "Fuzzing"): the input that failed,
// reduced, and the error it must give now.
#include "models/seq2seq/checkpoint.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/options.h"
#include "test_util.h"

namespace kiln {
namespace {

using testing::error_of;

const char* const kModel =
    R"("source_vocab": 10, "target_vocab": 10, "embed_size": 4, "num_layers": 1,)"
    R"("dropout": 0, "cell": "gru", "bidirectional": false, "attention": "none")";

// fuzz_config, fuzz_state: nlohmann's get<int64_t>() casts a JSON float to the integer type,
// undefined behaviour when it is out of range (UBSan: "1e+300 is outside the range of
// representable values of type 'long'") and a silent truncation otherwise. Every integer field
// now goes through the checked JsonReader (models/seq2seq/json_util.h).
TEST(FuzzRegressions, ConfigIntegerFieldGivenAHugeFloat) {
  const std::string text = std::string("{") + kModel + R"(, "hidden_size": 1e300})";
  EXPECT_EQ(error_of([&] { seq2seq::ModelConfig::from_json(text, "ck/config.json"); }),
            "ck/config.json: field 'hidden_size': expected an integer, got 1e+300");
  const std::string fraction = std::string("{") + kModel + R"(, "hidden_size": 128.5})";
  EXPECT_EQ(error_of([&] { seq2seq::ModelConfig::from_json(fraction, "ck/config.json"); }),
            "ck/config.json: field 'hidden_size': expected an integer, got 128.5");
  const std::string ok = std::string("{") + kModel + R"(, "hidden_size": 8})";
  EXPECT_EQ(seq2seq::ModelConfig::from_json(ok, "ck/config.json").hidden_size, 8);
}

TEST(FuzzRegressions, TrainOptionsIntegerFieldsGivenFloatsOrOutOfRange) {
  EXPECT_EQ(error_of([] { seq2seq::TrainOptions::from_json(R"({"epochs": -1e19})", "c.json"); }),
            "c.json: field 'epochs': expected an integer, got -1e+19");
  EXPECT_EQ(error_of([] {
              seq2seq::TrainOptions::from_json(R"({"batch": 9223372036854775808})", "c.json");
            }),
            "c.json: field 'batch': expected an integer, got 9223372036854775808");
  EXPECT_EQ(error_of([] { seq2seq::TrainOptions::from_json(R"({"seed": -1})", "c.json"); }),
            "c.json: field 'seed': expected an integer >= 0, got -1");
  EXPECT_EQ(
      seq2seq::TrainOptions::from_json(R"({"seed": 18446744073709551615, "epochs": 3})", "c.json")
          .seed,
      18446744073709551615ull);
}

TEST(FuzzRegressions, StateJsonIntegerFieldsGivenHugeFloats) {
  EXPECT_EQ(error_of([] {
              seq2seq::parse_train_state(R"({"epoch": 1e300, "rng_seed": 1, "rng_offset": 0})",
                                         "ck/state.json");
            }),
            "ck/state.json: field 'epoch': expected an integer >= 0, got 1e+300");
  EXPECT_EQ(error_of([] {
              seq2seq::parse_train_state(R"({"epoch": 1, "rng_seed": 1e30, "rng_offset": 0})",
                                         "ck/state.json");
            }),
            "ck/state.json: field 'rng_seed': expected an integer >= 0, got 1e+30");
  EXPECT_EQ(error_of([] {
              seq2seq::parse_train_state(
                  R"({"epoch": 1, "steps": -1e300, "rng_seed": 1, "rng_offset": 0})",
                  "ck/state.json");
            }),
            "ck/state.json: field 'steps': expected an integer >= 0, got -1e+300");
  seq2seq::TrainState state = seq2seq::parse_train_state(
      R"({"epoch": 2, "steps": 7, "train_loss": null, "rng_seed": 1, "rng_offset": 5})", "s");
  EXPECT_EQ(state.epoch, 2);
  EXPECT_EQ(state.steps, 7);
  EXPECT_EQ(state.rng_offset, 5u);
}

}  // namespace
}  // namespace kiln
