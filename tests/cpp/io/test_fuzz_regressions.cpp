// Inputs the fuzzers (fuzz/, scripts/fuzz.sh) found to escape as something other than a
// ranktune::Error, kept as regression tests.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/io/safetensors.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <filesystem>
#include <limits>

using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

namespace {

// fuzz_model_config and fuzz_safetensors_index: a number beyond double's range made nlohmann throw
// out_of_range (406), which only parse errors were caught for: the process terminated.
TEST(FuzzRegressionIo, JsonNumberOverflowIsAnErrorNamingTheFile) {
  for (const char* text : {"-5e1615", R"({"vocab_size": 88888888888E888})"}) {
    const ranktune::Error e = thrown_error([&] { ranktune::io::parse_json<ranktune::io::ordered_json>(text, "config.json"); });
    EXPECT_EQ(e.context().file, "config.json") << text;
    EXPECT_THAT(e.message(), HasSubstr("invalid JSON: number overflow")) << text;
  }
}

// fuzz_model_config: "num_attention_heads": 4444444444222222222222222222 is read by nlohmann as a
// double; get_int converted it to int64 (undefined behaviour, UBSan). An unsigned above 2^63-1
// wrapped to a negative number.
TEST(FuzzRegressionIo, IntegerBeyondInt64IsAnErrorNamingTheKey) {
  for (const char* number : {"4444444444222222222222222222", "18446744073709551615", "9223372036854775808",
                             "-1e19"}) {
    const auto root = ranktune::io::parse_json<ranktune::io::ordered_json>(
        std::string(R"({"num_attention_heads": )") + number + "}", "config.json");
    ranktune::io::JsonFields fields(root, "config.json");
    const ranktune::Error e = thrown_error([&] { fields.get_int("num_attention_heads"); });
    EXPECT_EQ(e.context().file, "config.json") << number;
    EXPECT_EQ(e.context().key, "num_attention_heads") << number;
    EXPECT_THAT(e.message(), HasSubstr("integer out of range")) << number;
  }
  const auto root = ranktune::io::parse_json<ranktune::io::ordered_json>(
      R"({"a": 9223372036854775807, "b": -9223372036854775808, "c": 4.0e3})", "config.json");
  ranktune::io::JsonFields fields(root, "config.json");
  EXPECT_EQ(fields.get_int("a"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(fields.get_int("b"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(fields.get_int("c"), 4000);
}

TEST(FuzzRegressionIo, ShardIndexWithNumberOverflowIsAnError) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "fuzz_index_overflow";
  std::filesystem::create_directories(dir);
  const std::string index = (dir / "model.safetensors.index.json").string();
  ranktune::io::write_file_atomic(index, "-5e1615-of-00d");
  const ranktune::Error e = thrown_error([&] { ranktune::io::SafetensorsCheckpoint::open(index); });
  EXPECT_EQ(e.context().file, index);
  EXPECT_THAT(e.message(), HasSubstr("number overflow"));
  std::filesystem::remove_all(dir);
}

}  // namespace
