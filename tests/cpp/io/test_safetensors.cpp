// safetensors: round trips, the real fixture, sharded checkpoints, malformed files crafted byte by
// byte, pickle refusal, copy-on-write mapping and atomic saves.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/safetensors.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using ranktune::Error;
using ranktune::io::NamedTensors;
using ranktune::io::save_safetensors;
using ranktune::io::SafetensorsCheckpoint;
using ranktune::io::SafetensorsFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

using ranktune::testing::error_of;

namespace {

// A fresh directory, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("ranktune_safetensors_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// An 8-byte little-endian length.
std::string u64_le(uint64_t n) {
  std::string out(8, '\0');
  std::memcpy(&out[0], &n, 8);
  return out;
}

// A file as bytes: length prefix, header text, data section.
std::string craft(const std::string& header, const std::string& data = "") {
  return u64_le(header.size()) + header + data;
}

// One header entry: "name": {"dtype": ..., "shape": ..., "data_offsets": ...}, values as JSON text.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": " + dtype + ", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}";
}

// Values and dtype must match exactly (NaN-free inputs).
void expect_same(const torch::Tensor& actual, const torch::Tensor& expected) {
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type());
  EXPECT_EQ(actual.sizes(), expected.sizes());
  EXPECT_TRUE(torch::equal(actual, expected));
}

}  // namespace

// ---- dtypes and round trips ------------------------------------------------------------------

TEST(SafetensorsDtype, NamesMapBothWays) {
  const std::vector<std::pair<std::string, torch::Dtype>> table = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  for (const auto& [name, dtype] : table) {
    EXPECT_EQ(ranktune::io::dtype_from_safetensors(name), dtype) << name;
    EXPECT_EQ(ranktune::io::dtype_to_safetensors(dtype), name) << name;
  }
  EXPECT_THAT(error_of([] { ranktune::io::dtype_from_safetensors("F8_E4M3"); }),
              AllOf(HasSubstr("unknown safetensors dtype \"F8_E4M3\""), HasSubstr("BF16")));
  EXPECT_THAT(error_of([] { ranktune::io::dtype_to_safetensors(torch::kComplexFloat); }),
              HasSubstr("cannot be stored in safetensors"));
}

TEST(SafetensorsRoundTrip, EveryDtypeWithMetadata) {
  TempDir dir;
  const std::string path = dir / "all.safetensors";
  torch::manual_seed(0);
  const NamedTensors tensors = {
      {"f64", torch::randn({3, 2}, torch::kFloat64)},
      {"f32.transposed", torch::randn({4, 3}).t()},  // non-contiguous input
      {"f16", torch::randn({5}).to(torch::kFloat16)},  // odd byte count: later tensors must stay aligned
      {"bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
      {"i64", torch::arange(-3, 3, torch::kInt64)},
      {"i32", torch::tensor({-7, 0, 7}, torch::kInt32)},
      {"i16", torch::tensor({-300, 300}, torch::kInt16)},
      {"i8", torch::tensor({-128, 127, 1}, torch::kInt8)},
      {"u8", torch::tensor({0, 255, 3}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 3})},
      {"scalar", torch::tensor(2.5)},
  };
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.names().size(), tensors.size());
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}}));
  for (const auto& [name, expected] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(file.contains(name));
    const torch::Tensor actual = file.tensor(name);
    expect_same(actual, expected);
    EXPECT_EQ(file.info(name).dtype, ranktune::io::dtype_to_safetensors(expected.scalar_type()));
    // Aligned, so tensor() handed out the mapping itself rather than a copy.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(actual.data_ptr()) % actual.element_size(), 0u);
  }
}

TEST(SafetensorsRoundTrip, HeaderIsCompactPaddedAndLargestDtypeFirst) {
  TempDir dir;
  const std::string path = dir / "layout.safetensors";
  save_safetensors(path, {{"b", torch::ones({3}, torch::kInt8)}, {"a", torch::ones({2}, torch::kFloat64)}});
  const std::string bytes = ranktune::io::read_file(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  const std::string header = bytes.substr(8, header_len);
  // Metadata first, then the largest dtype first; compact JSON padded with spaces.
  EXPECT_THAT(header, HasSubstr("{\"__metadata__\":{\"format\":\"pt\"},"
                                "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                                "\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]}}"));
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  EXPECT_EQ(bytes.size(), 8 + header_len + 19);
}

TEST(SafetensorsRoundTrip, WritingToAMappedTensorLeavesTheFileUnchanged) {
  TempDir dir;
  const std::string path = dir / "cow.safetensors";
  save_safetensors(path, {{"w", torch::arange(6, torch::kFloat32)}});
  const std::string before = ranktune::io::read_file(path);

  torch::Tensor w = SafetensorsFile::open(path).tensor("w");  // the file object is gone; w keeps the map
  w.fill_(42.0f);
  EXPECT_EQ(w.sum().item<float>(), 42.0f * 6);

  EXPECT_EQ(ranktune::io::read_file(path), before);
  expect_same(SafetensorsFile::open(path).tensor("w"), torch::arange(6, torch::kFloat32));
}

TEST(SafetensorsRoundTrip, EmptyFileAndEmptyMetadata) {
  TempDir dir;
  const std::string path = dir / "empty.safetensors";
  save_safetensors(path, {}, {});
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_TRUE(file.names().empty());
  EXPECT_TRUE(file.metadata().empty());
}

// ---- saving errors -----------------------------------------------------------------------------

TEST(SafetensorsSave, RejectsBadInputAndLeavesNothingBehind) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  const torch::Tensor t = torch::ones({2});
  const auto save = [&](const NamedTensors& tensors) { return error_of([&] { save_safetensors(path, tensors); }); };

  EXPECT_THAT(save({{"a", t}, {"a", t}}), AllOf(HasSubstr(path), HasSubstr("'a': duplicate tensor name")));
  EXPECT_THAT(save({{"a", t}, {"", t}}), AllOf(HasSubstr(path), HasSubstr("tensor #1 has an empty name")));
  EXPECT_THAT(save({{"u", torch::Tensor()}}), AllOf(HasSubstr(path), HasSubstr("'u': tensor is undefined")));
  EXPECT_THAT(save({{"c", torch::ones({2}, torch::kComplexFloat)}}),
              AllOf(HasSubstr(path), HasSubstr("'c': dtype ComplexFloat cannot be stored in safetensors")));
  EXPECT_THAT(save({{"__metadata__", t}}), HasSubstr("reserved"));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafetensorsSave, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir;
  const std::string path = dir / "taken";
  fs::create_directories(fs::path(path) / "child");  // rename over a non-empty directory fails
  EXPECT_THAT(error_of([&] { save_safetensors(path, {{"a", torch::ones({2})}}); }),
              AllOf(HasSubstr(path), HasSubstr("rename failed")));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken"});
}

TEST(SafetensorsSave, ReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  save_safetensors(path, {{"old", torch::ones({2})}});
  save_safetensors(path, {{"new", torch::zeros({3})}});
  EXPECT_EQ(SafetensorsFile::open(path).names(), std::vector<std::string>{"new"});
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

// ---- the real fixture ------------------------------------------------------------------------

TEST(SafetensorsFixture, ReadsTinyLlama) {
  RANKTUNE_REQUIRE_SHARED("fixtures/hf-tiny/llama/model.safetensors");
  const std::string dir = ranktune::testing::shared_dir() + "/fixtures/hf-tiny/llama";
  const SafetensorsFile file = SafetensorsFile::open(dir + "/model.safetensors");
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.names().size(), 21u);

  const auto& info = file.info("model.embed_tokens.weight");
  EXPECT_EQ(info.dtype, "F32");
  EXPECT_EQ(info.shape, (std::vector<int64_t>{256, 64}));
  const torch::Tensor embed = file.tensor("model.embed_tokens.weight");
  EXPECT_EQ(embed.sizes(), (std::vector<int64_t>{256, 64}));
  // Reference values read with Python from the same file.
  EXPECT_FLOAT_EQ(embed[0][0].item<float>(), 0.03586924448609352f);
  EXPECT_FLOAT_EQ(embed[255][63].item<float>(), 0.011271064169704914f);
  EXPECT_NEAR(embed.to(torch::kFloat64).sum().item<double>(), -0.39247151556287463, 1e-9);
  EXPECT_EQ(file.tensor("model.layers.0.self_attn.k_proj.weight").sizes(), (std::vector<int64_t>{32, 64}));

  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir);  // the directory finds the file
  EXPECT_EQ(ckpt.names(), file.names());
  EXPECT_EQ(ckpt.metadata().at("format"), "pt");
  EXPECT_EQ(ckpt.files(), std::vector<std::string>{dir + "/model.safetensors"});
  EXPECT_TRUE(torch::equal(ckpt.tensor("lm_head.weight"), file.tensor("lm_head.weight")));
}

// ---- checkpoints -----------------------------------------------------------------------------

namespace {

// Two shards and an index in `dir`: a.* in shard 1, b.* in shard 2.
void write_sharded(const TempDir& dir, const std::string& extra_index_entry = "") {
  save_safetensors(dir / "model-00001-of-00002.safetensors",
                   {{"a.weight", torch::ones({2, 2})}, {"a.bias", torch::zeros({2})}});
  save_safetensors(dir / "model-00002-of-00002.safetensors", {{"b.weight", torch::full({3}, 7, torch::kInt64)}});
  write_bytes(dir / "model.safetensors.index.json",
              R"({"metadata": {"total_size": 64, "origin": "test"}, "weight_map": {)"
              R"("a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",)"
              R"("b.weight": "model-00002-of-00002.safetensors")" + extra_index_entry + "}}");
}

}  // namespace

TEST(SafetensorsCheckpoint, OpensShardsThroughTheDirectory) {
  TempDir dir;
  write_sharded(dir);
  for (const std::string& path : {dir / "", dir / "model.safetensors.index.json"}) {
    SCOPED_TRACE(path);
    const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
    EXPECT_EQ(ckpt.path(), path);
    EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a.bias", "a.weight", "b.weight"}));
    EXPECT_EQ(ckpt.files(), (std::vector<std::string>{dir / "model-00001-of-00002.safetensors",
                                                      dir / "model-00002-of-00002.safetensors"}));
    // Index metadata; Hugging Face's integer total_size is kept as its JSON text.
    EXPECT_EQ(ckpt.metadata(), (std::map<std::string, std::string>{{"origin", "test"}, {"total_size", "64"}}));
    expect_same(ckpt.tensor("a.weight"), torch::ones({2, 2}));
    expect_same(ckpt.tensor("b.weight"), torch::full({3}, 7, torch::kInt64));
    EXPECT_EQ(ckpt.info("b.weight").dtype, "I64");
  }
}

TEST(SafetensorsCheckpoint, OpensASingleFilePath) {
  TempDir dir;
  save_safetensors(dir / "weights.safetensors", {{"x", torch::ones({1})}}, {{"k", "v"}});
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir / "weights.safetensors");
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"x"});
  EXPECT_EQ(ckpt.metadata().at("k"), "v");
}

TEST(SafetensorsCheckpoint, IndexedTensorMissingFromItsShard) {
  TempDir dir;
  write_sharded(dir, R"(, "c.weight": "model-00002-of-00002.safetensors")");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              AllOf(HasSubstr("model.safetensors.index.json: 'c.weight': listed in shard "
                              "'model-00002-of-00002.safetensors', but that shard has no such tensor")));
}

TEST(SafetensorsCheckpoint, IndexProblemsNameTheIndex) {
  TempDir dir;
  write_sharded(dir, R"(, "c.weight": "model-00003-of-00002.safetensors")");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              AllOf(HasSubstr("index.json: 'c.weight': cannot open shard 'model-00003-of-00002.safetensors'"),
                    HasSubstr("file not found")));

  write_sharded(dir, R"(, "c.weight": "../elsewhere.safetensors")");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              HasSubstr("'c.weight': shard '../elsewhere.safetensors' must be a relative path inside"));

  write_bytes(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              AllOf(HasSubstr("index.json: 'weight_map': missing")));
}

TEST(SafetensorsCheckpoint, MissingTensorNamesTheCheckpoint) {
  TempDir dir;
  write_sharded(dir);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir / "");
  EXPECT_THAT(error_of([&] { ckpt.tensor("model.nope"); }),
              AllOf(HasSubstr(dir / ""), HasSubstr("'model.nope': no such tensor in the checkpoint")));
  EXPECT_FALSE(ckpt.contains("model.nope"));

  const SafetensorsFile file = SafetensorsFile::open(dir / "model-00001-of-00002.safetensors");
  EXPECT_THAT(error_of([&] { file.tensor("b.weight"); }),
              HasSubstr("model-00001-of-00002.safetensors: 'b.weight': no such tensor in this file"));
}

TEST(SafetensorsCheckpoint, MissingPathOrEmptyDirectory) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / "absent"); }),
              AllOf(HasSubstr(dir / "absent"), HasSubstr("checkpoint not found")));
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(dir / "absent.safetensors"); }),
              AllOf(HasSubstr(dir / "absent.safetensors"), HasSubstr("file not found")));
  save_safetensors(dir / "adapter_model.safetensors", {});
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              AllOf(HasSubstr("no model.safetensors or model.safetensors.index.json"),
                    HasSubstr("found adapter_model.safetensors")));
}

TEST(SafetensorsPickle, RefusesADirectoryWithOnlyPytorchModelBin) {
  TempDir dir;
  write_bytes(dir / "pytorch_model.bin", "\x80\x02not really a pickle");
  write_bytes(dir / "config.json", "{}");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / ""); }),
              AllOf(HasSubstr(dir / ""), HasSubstr("refusing to load pickle checkpoint 'pytorch_model.bin'"),
                    HasSubstr("arbitrary code"), HasSubstr("safe_serialization=True"),
                    HasSubstr("safetensors.torch.save_file")));
}

TEST(SafetensorsPickle, RefusesPicklePathsDirectly) {
  TempDir dir;
  for (const std::string name : {"pytorch_model.bin", "weights.pt", "weights.pth"}) {
    write_bytes(dir / name, "\x80\x02");
    EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(dir / name); }),
                AllOf(HasSubstr(dir / name), HasSubstr("pickle checkpoint '" + name + "'"),
                      HasSubstr("arbitrary code")));
  }
}

// ---- malformed files -------------------------------------------------------------------------

// Each test writes crafted bytes to bad.safetensors and checks the message names the file, the
// tensor where there is one, and the problem.
class SafetensorsMalformed : public ::testing::Test {
 protected:
  std::string open_error(const std::string& bytes) {
    write_bytes(path(), bytes);
    return error_of([&] { SafetensorsFile::open(path()); });
  }
  // A header with `entries` (comma-joined JSON members) over `data_size` zero bytes.
  std::string open_error_for(const std::string& entries, size_t data_size = 16) {
    return open_error(craft("{" + entries + "}", std::string(data_size, '\0')));
  }
  std::string path() const { return dir_ / "bad.safetensors"; }

 private:
  TempDir dir_;
};

TEST_F(SafetensorsMalformed, ShorterThanTheLengthPrefix) {
  EXPECT_THAT(open_error("abc"), AllOf(HasSubstr(path()), HasSubstr("file is 3 bytes, too short")));
}

TEST_F(SafetensorsMalformed, HeaderLengthPastTheEnd) {
  EXPECT_THAT(open_error(u64_le(100) + "{}"),
              AllOf(HasSubstr(path()), HasSubstr("header length 100 runs past the end of the file (10 bytes)")));
}

TEST_F(SafetensorsMalformed, HeaderLengthAbsurd) {
  EXPECT_THAT(open_error(u64_le(uint64_t{1} << 40) + "{}"),
              AllOf(HasSubstr(path()), HasSubstr("over the 100 MB limit")));
}

TEST_F(SafetensorsMalformed, HeaderNotJsonOrNotAnObject) {
  EXPECT_THAT(open_error(craft("{\"a\": ")), AllOf(HasSubstr(path()), HasSubstr("invalid JSON")));
  EXPECT_THAT(open_error(craft("[1, 2]")),
              AllOf(HasSubstr(path()), HasSubstr("header must be a JSON object, got list")));
}

TEST_F(SafetensorsMalformed, EntryNotAnObjectOrMissingFields) {
  EXPECT_THAT(open_error_for("\"w\": [1]"), AllOf(HasSubstr(path()), HasSubstr("'w': expected an object")));
  EXPECT_THAT(open_error_for(R"("w": {"shape": [2], "data_offsets": [0, 8]})"),
              AllOf(HasSubstr(path()), HasSubstr("'w': missing \"dtype\"")));
  EXPECT_THAT(open_error_for(R"("w": {"dtype": "F32", "data_offsets": [0, 8]})"), HasSubstr("'w': missing \"shape\""));
  EXPECT_THAT(open_error_for(R"("w": {"dtype": "F32", "shape": [2]})"), HasSubstr("'w': missing \"data_offsets\""));
}

TEST_F(SafetensorsMalformed, UnknownDtype) {
  EXPECT_THAT(open_error_for(entry("w", "\"F8_E4M3\"", "[2]", "[0, 2]")),
              AllOf(HasSubstr(path()), HasSubstr("'w': unknown dtype \"F8_E4M3\" (supported: F64, F32")));
  EXPECT_THAT(open_error_for(entry("w", "7", "[2]", "[0, 2]")), HasSubstr("'w': dtype must be a string"));
}

TEST_F(SafetensorsMalformed, BadShapes) {
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[2, -1]", "[0, 8]")),
              AllOf(HasSubstr(path()), HasSubstr("'w': shape [2,-1] has -1; dimensions must be non-negative")));
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[2.5]", "[0, 8]")), HasSubstr("has 2.5; dimensions must be"));
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[\"2\"]", "[0, 8]")), HasSubstr("has \"2\"; dimensions must be"));
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "2", "[0, 8]")), HasSubstr("'w': shape must be a list"));
}

TEST_F(SafetensorsMalformed, BadDataOffsets) {
  for (const std::string offsets : {"[0]", "[-1, 8]", "[0, \"8\"]", "[0, 8, 16]", "{}"}) {
    EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[2]", offsets)),
                AllOf(HasSubstr(path()), HasSubstr("'w': data_offsets must be two non-negative integers")))
        << offsets;
  }
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[0]", "[8, 4]")),
              HasSubstr("'w': data_offsets [8,4] have begin after end"));
}

TEST_F(SafetensorsMalformed, OffsetsPastTheDataSection) {
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[4]", "[8, 24]"), 16),
              AllOf(HasSubstr(path()), HasSubstr("'w': data_offsets [8,24] run past the end of the data section "
                                                 "(16 bytes)")));
}

TEST_F(SafetensorsMalformed, ByteSizeDisagreesWithShape) {
  EXPECT_THAT(open_error_for(entry("w", "\"F32\"", "[3]", "[0, 8]")),
              AllOf(HasSubstr(path()), HasSubstr("'w': data_offsets [0,8] hold 8 bytes, but shape [3] of F32 "
                                                 "needs 12 bytes")));
  // A shape whose byte count overflows 64 bits must not wrap around to a small number.
  EXPECT_THAT(open_error_for(entry("w", "\"F64\"", "[4294967296, 4294967296]", "[0, 0]")),
              HasSubstr("needs more than 2^64 bytes"));
}

TEST_F(SafetensorsMalformed, OverlappingTensors) {
  EXPECT_THAT(open_error_for(entry("a", "\"F32\"", "[2]", "[0, 8]") + ", " +
                             entry("b", "\"F32\"", "[2]", "[4, 12]")),
              AllOf(HasSubstr(path()), HasSubstr("'b': bytes [4, 12) overlap tensor 'a' [0, 8)")));
  // Zero-size tensors occupy no bytes, wherever their offsets point.
  EXPECT_EQ(open_error_for(entry("a", "\"F32\"", "[2]", "[0, 8]") + ", " + entry("e", "\"F32\"", "[0]", "[4, 4]")),
            "");
}

TEST_F(SafetensorsMalformed, MetadataNotStringToString) {
  EXPECT_THAT(open_error_for(R"("__metadata__": {"format": "pt", "step": 3})"),
              AllOf(HasSubstr(path()), HasSubstr("'__metadata__': value of \"step\" must be a string, got integer 3")));
  EXPECT_THAT(open_error_for(R"("__metadata__": ["pt"])"),
              HasSubstr("'__metadata__': expected an object of string values, got list"));
}

TEST_F(SafetensorsMalformed, BoolBytesOtherThanZeroOrOne) {
  EXPECT_EQ(open_error(craft("{" + entry("m", "\"BOOL\"", "[3]", "[0, 3]") + "}", std::string("\x01\x00\x07", 3))),
            "");  // the header is fine; the bad byte is found when the tensor is asked for
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(path()).tensor("m"); }),
              AllOf(HasSubstr(path()), HasSubstr("'m': BOOL element 2 is stored as byte 7; only 0 and 1 are valid")));
}

TEST_F(SafetensorsMalformed, ValidCraftedFileReadsBack) {
  // The crafting helpers themselves produce a readable file when nothing is wrong.
  std::string data(8, '\0');
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(&data[0], values, 8);
  EXPECT_EQ(open_error(craft("{" + entry("w", "\"F32\"", "[2]", "[0, 8]") + "}", data)), "");
  expect_same(SafetensorsFile::open(path()).tensor("w"), torch::tensor({1.5f, -2.0f}));
}

TEST_F(SafetensorsMalformed, MisalignedDataIsCopiedNotRejected) {
  // An unpadded header and a 1-byte tensor first put "w" at an odd address: legal, just unusual.
  std::string data(9, '\0');
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(&data[1], values, 8);
  std::string header =
      "{" + entry("u", "\"U8\"", "[1]", "[0, 1]") + ", " + entry("w", "\"F32\"", "[2]", "[1, 9]") + "}";
  if ((8 + header.size() + 1) % alignof(float) == 0) header += ' ';  // keep w off a 4-byte boundary
  EXPECT_EQ(open_error(craft(header, data)), "");
  const torch::Tensor w = SafetensorsFile::open(path()).tensor("w");
  expect_same(w, torch::tensor({1.5f, -2.0f}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data_ptr()) % alignof(float), 0u);
}
