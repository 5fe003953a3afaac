// Inputs the fuzzers (fuzz/, scripts/fuzz.sh) found to escape as something other than a
// ranktune::Error, kept as regression tests.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/io/safetensors.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <filesystem>

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
